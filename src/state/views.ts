/** The app's views, in rail order. `models` is the start screen; `organisms` needs a base only; the others need both models loaded. */
export const VIEWS = ['models', 'weights', 'lens', 'adl', 'patching', 'crosscoders', 'methods', 'organisms'] as const;
export type View = (typeof VIEWS)[number];

export function viewNeedsModels(view: View): boolean {
  return view !== 'models' && view !== 'organisms';
}

import type { View } from '../state/views.ts';
import type { Role } from '../state/models.ts';

export const VIEW_LABELS: Record<View, string> = {
  models: 'Models',
  weights: 'Weights',
  lens: 'Activations / Lens',
  adl: 'ADL',
  patching: 'Patching',
  crosscoders: 'Crosscoders',
  methods: 'Methods',
  organisms: 'Organisms',
};

export const ROLE_LABELS: Record<Role, string> = { base: 'Base model', ft: 'Fine-tuned model' };

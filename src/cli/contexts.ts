// How the corpus commands show a place in the corpus: the text up to the token, the token in [[ ]].
import type { Tokenizer } from '../io/tokenizer.ts';

export function placeText(tokenizer: Tokenizer, ids: readonly number[], position: number, before = 12): string {
  const prefix = tokenizer.decode(ids.slice(Math.max(0, position - before), position));
  return `${prefix}[[${tokenizer.decodeToken(ids[position]!)}]]`;
}

export const tokenList = (ts: readonly { token: string | null; id: number }[]): string => ts.map((t) => JSON.stringify(t.token ?? `#${t.id}`)).join(' ');

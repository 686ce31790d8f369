// Tokenizers behind one interface: Hugging Face tokenizer.json (through @huggingface/tokenizers) and
// the SentencePiece-style vocabularies carried by llama2.c tokenizer files and GGUF headers.
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { FormatError, readJson, type FileSet } from './source.ts';
import { bytesToText } from './token-text.ts';

/** GPT-2's byte-level alphabet: the character each byte is written as in a ByteLevel vocabulary, inverted. */
const BYTE_LEVEL_BYTES: ReadonlyMap<string, number> = (() => {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const map = new Map<string, number>();
  let extra = 0;
  for (let b = 0; b < 256; b++) map.set(String.fromCodePoint(printable(b) ? b : 256 + extra++), b);
  return map;
})();

function usesByteLevel(json: object): boolean {
  const decoder = 'decoder' in json ? json.decoder : null;
  return JSON.stringify(decoder ?? null).includes('"ByteLevel"');
}

/** The bytes of a vocabulary piece: a byte-fallback piece (<0xE2>) or a ByteLevel piece ("Ġâ"); null for any other. */
function pieceBytes(piece: string, byteLevel: boolean): Uint8Array | null {
  const fallback = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
  if (fallback) return Uint8Array.of(parseInt(fallback[1]!, 16));
  if (!byteLevel) return null;
  const bytes: number[] = [];
  for (const c of piece) {
    const b = BYTE_LEVEL_BYTES.get(c);
    if (b === undefined) return null;
    bytes.push(b);
  }
  return Uint8Array.from(bytes);
}

export interface EncodeOptions {
  /** Start with the BOS token. Left out: the tokenizer's own default (its post-processor, or BOS for llama2.c). */
  addBos?: boolean;
}

export interface Tokenizer {
  /** One more than the largest token id. */
  readonly vocabSize: number;
  /**
   * One more than the largest id of a token that is not a special added token (Gemma 3's tokenizer
   * adds <image_soft_token> at 262,144, past its text models' vocabulary). Absent: vocabSize.
   */
  readonly ordinaryVocabSize?: number;
  readonly bosId?: number | undefined;
  readonly eosId?: number | undefined;
  encode(text: string, opts?: EncodeOptions): number[];
  /** The text of a sequence, special tokens left out. */
  decode(ids: readonly number[]): string;
  /**
   * The text of one token, with its leading space if it has one; special tokens give their content.
   * Bytes that are not a whole UTF-8 character on their own are written as <0xE2> (token-text.ts).
   */
  decodeToken(id: number): string;
}

function checkId(id: number, vocabSize: number): void {
  if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new RangeError(`token id ${id} is outside the vocabulary (0..${vocabSize - 1})`);
}

/** A tokenizer.json (and optional tokenizer_config.json) run by @huggingface/tokenizers. */
export function hfTokenizer(json: unknown, config: unknown = {}, name = 'tokenizer.json'): Tokenizer {
  if (typeof json !== 'object' || json === null || Array.isArray(json) || !Object.hasOwn(json, 'model')) throw new FormatError(name, 'is not a tokenizer.json (no "model")');
  checkTokenizerJson(json as Record<string, unknown>, name);
  const cfg = (typeof config === 'object' && config !== null && !Array.isArray(config) ? config : {}) as Record<string, unknown>;
  let tok: HfTokenizer;
  try {
    tok = new HfTokenizer(json, { ...cfg, clean_up_tokenization_spaces: cfg.clean_up_tokenization_spaces === true });
  } catch (e) {
    throw new FormatError(name, `cannot build the tokenizer (${(e as Error).message})`);
  }
  const vocab = tok.get_vocab(true);
  let vocabSize = 0;
  for (const id of vocab.values()) vocabSize = Math.max(vocabSize, id + 1);
  const special = new Map<number, string>();
  for (const [id, t] of tok.get_added_tokens_decoder()) if (t.special) special.set(id, t.content);
  let ordinaryVocabSize = 0;
  for (const id of vocab.values()) if (!special.has(id)) ordinaryVocabSize = Math.max(ordinaryVocabSize, id + 1);
  const idOf = (v: unknown): number | undefined => {
    const content = typeof v === 'string' ? v : typeof v === 'object' && v !== null && 'content' in v ? String(v.content) : undefined;
    return content === undefined ? undefined : tok.token_to_id(content);
  };
  const bosId = idOf(cfg.bos_token);
  const eosId = idOf(cfg.eos_token);
  // A reference token decoded in front of the one asked for, so decoders that strip the first
  // token's leading space (SentencePiece's "Strip", Metaspace) keep it.
  const refIds = tok.encode('a', { add_special_tokens: false }).ids;
  const ref = refIds[refIds.length - 1];
  const refText = ref === undefined ? '' : tok.decode([ref]);
  const byteLevel = usesByteLevel(json);
  return {
    vocabSize,
    ordinaryVocabSize,
    bosId,
    eosId,
    encode(text, opts = {}) {
      if (opts.addBos === undefined) return tok.encode(text).ids;
      const ids = tok.encode(text, { add_special_tokens: false }).ids;
      return opts.addBos && bosId !== undefined ? [bosId, ...ids] : ids;
    },
    decode(ids) {
      if (ids.length === 0) return '';
      for (const id of ids) checkId(id, vocabSize);
      return tok.decode([...ids], { skip_special_tokens: true });
    },
    decodeToken(id) {
      checkId(id, vocabSize);
      const content = special.get(id);
      if (content !== undefined) return content;
      const text = ref === undefined ? tok.decode([id]) : tok.decode([ref, id]);
      const own = ref === undefined ? text : text.startsWith(refText) ? text.slice(refText.length) : tok.decode([id]);
      if (!own.includes('\uFFFD')) return own;
      // Part of a character: its bytes say more than U+FFFD.
      const piece = tok.id_to_token(id);
      const bytes = piece === undefined || piece.includes('\uFFFD') ? null : pieceBytes(piece, byteLevel);
      return bytes ? bytesToText(bytes) : own;
    },
  };
}

/** Largest token id accepted from a tokenizer file (the same limit as a config's vocab_size). */
export const MAX_TOKEN_ID = (1 << 24) - 1;

/**
 * The parts of a tokenizer.json that the tokenizers library trusts, checked before it runs: ids are
 * integers within MAX_TOKEN_ID (an id of 2³¹ would make it walk a sparse array that long), a BPE /
 * WordPiece / WordLevel vocabulary maps tokens to ids, a Unigram one lists [piece, score] pairs.
 */
function checkTokenizerJson(json: Record<string, unknown>, name: string): void {
  const id = (v: unknown, what: string): void => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_TOKEN_ID) throw new FormatError(name, `${what} has id ${JSON.stringify(v)}: token ids must be integers in 0..${MAX_TOKEN_ID}`);
  };
  const model = json.model;
  if (typeof model !== 'object' || model === null || Array.isArray(model)) throw new FormatError(name, '"model" is not an object');
  const m = model as Record<string, unknown>;
  const type = Object.hasOwn(m, 'type') ? m.type : undefined;
  const vocab = Object.hasOwn(m, 'vocab') ? m.vocab : undefined;
  if (type === 'Unigram') {
    if (!Array.isArray(vocab) || vocab.length > MAX_TOKEN_ID + 1 || !vocab.every((e) => Array.isArray(e) && typeof e[0] === 'string' && typeof e[1] === 'number')) {
      throw new FormatError(name, 'a Unigram model\'s "vocab" must list [piece, score] pairs');
    }
  } else if (vocab !== undefined) {
    if (typeof vocab !== 'object' || vocab === null || Array.isArray(vocab)) throw new FormatError(name, `the ${String(type ?? 'model')} "vocab" must map tokens to ids (a JSON object), got ${Array.isArray(vocab) ? 'an array' : JSON.stringify(vocab)}`);
    for (const [token, v] of Object.entries(vocab)) id(v, `vocabulary token ${JSON.stringify(token.slice(0, 40))}`);
  }
  const added = Object.hasOwn(json, 'added_tokens') ? json.added_tokens : undefined;
  if (added !== undefined && added !== null) {
    if (!Array.isArray(added)) throw new FormatError(name, '"added_tokens" must be an array');
    for (const t of added) {
      if (typeof t !== 'object' || t === null || typeof (t as { content?: unknown }).content !== 'string') throw new FormatError(name, 'an entry of "added_tokens" has no "content" string');
      id((t as { id?: unknown }).id, `added token ${JSON.stringify((t as { content: string }).content.slice(0, 40))}`);
    }
  }
}

/** tokenizer.json (with tokenizer_config.json when present) from a folder, or undefined if there is none. */
export async function readHfTokenizer(files: FileSet): Promise<Tokenizer | undefined> {
  const json = files.get('tokenizer.json');
  if (!json) return undefined;
  const cfg = files.get('tokenizer_config.json');
  return hfTokenizer(await readJson(json), cfg ? await readJson(cfg) : {}, json.name);
}

export type PieceKind = 'normal' | 'control' | 'unknown' | 'byte';

/** A SentencePiece BPE vocabulary: pieces (with " " for the word-boundary mark "▁"), scores, kinds. */
export interface SentencePieceVocab {
  readonly pieces: readonly string[];
  readonly scores: ArrayLike<number>;
  readonly kinds: readonly PieceKind[];
  readonly bosId?: number | undefined;
  readonly eosId?: number | undefined;
  /** Prepend a space to non-empty text, as SentencePiece's add_dummy_prefix does. */
  readonly addSpacePrefix: boolean;
  /** Whether encode adds BOS when not told. */
  readonly addBosByDefault: boolean;
}

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

/**
 * SentencePiece BPE as llama2.c's run.c and llama.cpp run it: one piece per code point (bytes
 * through <0xXX> pieces when a code point is not in the vocabulary), then repeatedly merge the
 * adjacent pair whose concatenation has the best score, leftmost on ties. Whitespace is not
 * collapsed (sentencepiece's own normaliser would), matching Hugging Face tokenizers.
 */
export class SentencePieceTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  private readonly ids = new Map<string, number>();
  private readonly byteIds = new Int32Array(256).fill(-1);
  private readonly byteOf: Int16Array;

  constructor(private readonly vocab: SentencePieceVocab) {
    const n = vocab.pieces.length;
    if (vocab.scores.length !== n || vocab.kinds.length !== n) throw new Error(`SentencePiece vocabulary has ${n} pieces but ${vocab.scores.length} scores and ${vocab.kinds.length} kinds`);
    this.vocabSize = n;
    this.bosId = vocab.bosId;
    this.eosId = vocab.eosId;
    this.byteOf = new Int16Array(n).fill(-1);
    for (let id = 0; id < n; id++) {
      const piece = vocab.pieces[id]!;
      const kind = vocab.kinds[id]!;
      const m = BYTE_PIECE.exec(piece);
      if (m && (kind === 'byte' || kind === 'normal')) {
        const b = parseInt(m[1]!, 16);
        this.byteOf[id] = b;
        if (this.byteIds[b] === -1) this.byteIds[b] = id;
      } else if (kind === 'normal' && !this.ids.has(piece)) {
        this.ids.set(piece, id);
      }
    }
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const out: number[] = [];
    if ((opts.addBos ?? this.vocab.addBosByDefault) && this.bosId !== undefined) out.push(this.bosId);
    if (text === '') return out;
    const tokens: number[] = [];
    const utf8 = new TextEncoder();
    for (const ch of this.vocab.addSpacePrefix ? ' ' + text : text) {
      const id = this.ids.get(ch);
      if (id !== undefined) {
        tokens.push(id);
        continue;
      }
      for (const b of utf8.encode(ch)) {
        const bid = this.byteIds[b]!;
        if (bid < 0) throw new Error(`cannot encode ${JSON.stringify(ch)}: the vocabulary has neither it nor the byte piece <0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
        tokens.push(bid);
      }
    }
    for (const t of this.mergeAll(tokens)) out.push(t);
    return out;
  }

  /**
   * Applies the best-scoring merge until none is left, leftmost first among equal scores (what
   * run.c's rescan does), with a heap of candidate pairs over a linked list of symbols so long
   * texts stay O(n log n). Entries whose symbols have since changed are skipped when popped.
   */
  private mergeAll(tokens: number[]): number[] {
    const n = tokens.length;
    const { pieces, scores } = this.vocab;
    const id = Int32Array.from(tokens);
    const prev = Int32Array.from({ length: n }, (_, i) => i - 1);
    const next = Int32Array.from({ length: n }, (_, i) => (i + 1 < n ? i + 1 : -1));
    const version = new Int32Array(n);
    type Candidate = { score: number; left: number; right: number; merged: number; lv: number; rv: number };
    const heap: Candidate[] = [];
    const before = (a: Candidate, b: Candidate) => a.score > b.score || (a.score === b.score && a.left < b.left);
    const push = (c: Candidate) => {
      let i = heap.push(c) - 1;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!before(heap[i]!, heap[p]!)) break;
        [heap[i], heap[p]] = [heap[p]!, heap[i]!];
        i = p;
      }
    };
    const pop = (): Candidate | undefined => {
      const top = heap[0];
      const last = heap.pop()!;
      if (heap.length > 0) {
        heap[0] = last;
        for (let i = 0; ; ) {
          const l = 2 * i + 1;
          const r = l + 1;
          let m = i;
          if (l < heap.length && before(heap[l]!, heap[m]!)) m = l;
          if (r < heap.length && before(heap[r]!, heap[m]!)) m = r;
          if (m === i) break;
          [heap[i], heap[m]] = [heap[m]!, heap[i]!];
          i = m;
        }
      }
      return top;
    };
    const consider = (left: number, right: number) => {
      if (left < 0 || right < 0) return;
      const merged = this.ids.get(pieces[id[left]!]! + pieces[id[right]!]!);
      if (merged !== undefined) push({ score: scores[merged]!, left, right, merged, lv: version[left]!, rv: version[right]! });
    };
    for (let i = 0; i + 1 < n; i++) consider(i, i + 1);
    for (let c = pop(); c; c = pop()) {
      if (next[c.left] !== c.right || version[c.left] !== c.lv || version[c.right] !== c.rv) continue;
      id[c.left] = c.merged;
      version[c.left]!++;
      version[c.right] = -1;
      const after = next[c.right]!;
      next[c.left] = after;
      if (after >= 0) prev[after] = c.left;
      consider(prev[c.left]!, c.left);
      consider(c.left, after);
    }
    const out: number[] = [];
    for (let i = n > 0 ? 0 : -1; i >= 0; i = next[i]!) out.push(id[i]!);
    return out;
  }

  decode(ids: readonly number[]): string {
    const bytes: number[] = [];
    const utf8 = new TextEncoder();
    for (const id of ids) {
      checkId(id, this.vocabSize);
      const b = this.byteOf[id]!;
      if (b >= 0) bytes.push(b);
      else if (this.vocab.kinds[id] === 'normal') for (const x of utf8.encode(this.vocab.pieces[id]!)) bytes.push(x);
    }
    const text = new TextDecoder().decode(new Uint8Array(bytes));
    // The dummy prefix added at encoding comes off again, as run.c and Hugging Face's decoder do.
    return this.vocab.addSpacePrefix && text.startsWith(' ') ? text.slice(1) : text;
  }

  decodeToken(id: number): string {
    checkId(id, this.vocabSize);
    const b = this.byteOf[id]!;
    if (b >= 0) return bytesToText(Uint8Array.of(b));
    return this.vocab.pieces[id]!;
  }
}

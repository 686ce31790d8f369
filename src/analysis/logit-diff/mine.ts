// Diff mining (science-of-finetuning's diff_mining): at every position of a corpus, the K tokens whose
// next-token logit the fine-tune raised most over the base (top-K of logit_ft − logit_base); tokens
// ranked by how often they are in that top-K, and grouped into topics by a non-negative matrix
// factorisation of the (position × token) matrix of those positive differences, restricted to the
// most frequent tokens (the reference's logit_diff_magnitude mode: entries outside a position's top-K
// are 0).
import { checkPair, type ModelPair, type RunOptions } from '../activations/run.ts';
import { logitDiffTopK } from './logits.ts';
import { nmf } from './nmf.ts';
import { forEachPairedBatch, TopList, type CorpusPlace } from './stream.ts';

export interface MiningOptions extends RunOptions {
  /** Tokens per position (top-K of the logit difference). Default 10. */
  k?: number;
  /** Tokens reported, by count. Default 50. */
  top?: number;
  /** NMF components (0: none). Default 5. */
  topics?: number;
  /** Columns of the NMF matrix: the most frequent tokens. Default 200. */
  topicTokens?: number;
  /** Tokens and contexts listed per topic. Default 20 and 10. */
  tokensPerTopic?: number;
  contextsPerTopic?: number;
  /** Positions before this are left out (e.g. 1 to skip what follows BOS). Default 0. */
  fromPosition?: number;
  nmfIterations?: number;
  seed?: number;
}

export interface MinedToken {
  id: number;
  /** Positions where the token was in the top-K. */
  count: number;
  /** Mean of logit_ft − logit_base over those positions. */
  meanDiff: number;
  /** Largest difference seen. */
  maxDiff: number;
}

export interface MiningTopic {
  /** Tokens by their weight in the topic (row of H). */
  tokens: { id: number; weight: number }[];
  /** Positions by their weight on the topic (column of W). */
  contexts: (CorpusPlace & { weight: number })[];
}

export interface MiningResult {
  k: number;
  positions: number;
  samples: number;
  tokens: MinedToken[];
  topics: MiningTopic[];
  /** ‖V − WH‖_F / ‖V‖_F of the topic model (NaN without topics). */
  topicError: number;
}

export async function diffMining(pair: ModelPair, samples: readonly (readonly number[])[], opts: MiningOptions = {}): Promise<MiningResult> {
  checkPair(pair);
  const V = pair.base.config.vocab;
  const k = Math.min(opts.k ?? 10, V);
  const from = opts.fromPosition ?? 0;
  const count = new Float64Array(V);
  const sum = new Float64Array(V);
  const max = new Float64Array(V).fill(-Infinity);
  // Per kept position: its place and its top-K (ids, positive differences), for the topic model.
  const places: CorpusPlace[] = [];
  const topIds: Int32Array[] = [];
  const topDiffs: Float32Array[] = [];
  await forEachPairedBatch(pair, samples, ['ln_final.hook_normalized'], { ...opts, stage: 'mine' }, async (b) => {
    const name = 'ln_final.hook_normalized';
    const top = await logitDiffTopK(pair, b.base.get(name)!, b.ft.get(name)!, k);
    const T = b.seq;
    const keep: number[] = [];
    for (let row = 0; row < top.rows; row++) {
      const position = row % T;
      if (position < from) continue;
      keep.push(row);
      places.push({ sample: b.samples[Math.floor(row / T)]!, position });
      for (let j = 0; j < k; j++) {
        const id = top.ids[row * k + j]!;
        const x = top.diffs[row * k + j]!;
        count[id]!++;
        sum[id]! += x;
        if (x > max[id]!) max[id] = x;
      }
    }
    const ids = new Int32Array(keep.length * k);
    const diffs = new Float32Array(keep.length * k);
    keep.forEach((row, i) => {
      ids.set(top.ids.subarray(row * k, row * k + k), i * k);
      diffs.set(top.diffs.subarray(row * k, row * k + k), i * k);
    });
    topIds.push(ids);
    topDiffs.push(diffs);
  });
  const ranked = [...count.keys()].filter((id) => count[id]! > 0).sort((a, b) => count[b]! - count[a]! || sum[b]! / count[b]! - sum[a]! / count[a]! || a - b);
  const tokens = ranked.slice(0, opts.top ?? 50).map((id) => ({ id, count: count[id]!, meanDiff: sum[id]! / count[id]!, maxDiff: max[id]! }));

  const nTopics = opts.topics ?? 5;
  const columns = ranked.slice(0, opts.topicTokens ?? 200);
  if (nTopics <= 0 || columns.length === 0) return { k, positions: places.length, samples: samples.length, tokens, topics: [], topicError: NaN };
  const colOf = new Map(columns.map((id, c) => [id, c]));
  const row: number[] = [];
  const col: number[] = [];
  const value: number[] = [];
  let r = 0;
  for (let chunk = 0; chunk < topIds.length; chunk++) {
    const ids = topIds[chunk]!;
    const diffs = topDiffs[chunk]!;
    for (let i = 0; i < ids.length / k; i++, r++) {
      for (let j = 0; j < k; j++) {
        const c = colOf.get(ids[i * k + j]!);
        const x = diffs[i * k + j]!;
        if (c === undefined || !(x > 0)) continue;
        row.push(r);
        col.push(c);
        value.push(x);
      }
    }
  }
  const rank = Math.min(nTopics, columns.length, places.length);
  opts.signal?.throwIfAborted();
  const f = nmf({ rows: places.length, cols: columns.length, row: Int32Array.from(row), col: Int32Array.from(col), value: Float64Array.from(value) }, rank, {
    ...(opts.nmfIterations === undefined ? {} : { iterations: opts.nmfIterations }),
    seed: opts.seed ?? 0,
  });
  const topics: MiningTopic[] = [];
  for (let t = 0; t < rank; t++) {
    const tokenList = new TopList<number>(opts.tokensPerTopic ?? 20);
    for (let c = 0; c < columns.length; c++) tokenList.add(f.h[t * columns.length + c]!, columns[c]!);
    const contextList = new TopList<CorpusPlace>(opts.contextsPerTopic ?? 10);
    for (let i = 0; i < places.length; i++) contextList.add(f.w[i * rank + t]!, places[i]!);
    topics.push({
      tokens: tokenList.items.filter((x) => x.score > 0).map((x) => ({ id: x.item, weight: x.score })),
      contexts: contextList.items.filter((x) => x.score > 0).map((x) => ({ ...x.item, weight: x.score })),
    });
  }
  return { k, positions: places.length, samples: samples.length, tokens, topics, topicError: f.relativeError };
}

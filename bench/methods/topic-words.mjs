// Which topic words each issue-12 method surfaces in its first entries, from the JSON that
// bench/methods/cli-times.sh wrote for a demo organism.
// usage: node bench/methods/topic-words.mjs <results dir> <ocean|space> [entries = 50]
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const [dir, organism, n = '50'] = process.argv.slice(2);
const N = Number(n);
const TOPICS = {
  ocean: 'sea seas ocean oceans wave waves shell shells seashell seashells whale whales boat boats fish fishes beach sand sandy salt salty dolphin dolphins water swim swam crab crabs tide sail sailed sailor shore starfish splash island octopus seagull surf coral pearl',
  space: 'rocket rockets moon moons star stars space astronaut astronauts planet planets earth orbit alien aliens dust launch launched twinkle twinkled twinkling galaxy comet spaceship floated float landed land crater sky',
};
const topic = new Set(TOPICS[organism].split(' '));
const words = (text) => (text.toLowerCase().match(/[a-z]+/g) ?? []).filter((w) => topic.has(w));
const read = (name) => (existsSync(join(dir, `${name}.json`)) ? JSON.parse(readFileSync(join(dir, `${name}.json`), 'utf8') || 'null') : null);
const found = (texts) => [...new Set(texts.flatMap(words))];
const tokens = (list, k = list.length) => list.slice(0, k).map((t) => t.token);

const rows = [];
const adl = read('adl');
if (adl) {
  rows.push(['ADL lens, + (20 per position)', found(adl.positions.flatMap((p) => tokens(p.top, 20)))]);
  rows.push(['ADL lens, − (20 per position)', found(adl.positions.flatMap((p) => tokens(p.top_negative ?? p.topNegative ?? [], 20)))]);
}
const mine = read('mine');
if (mine) {
  rows.push([`mine, top ${N} tokens`, found(tokens(mine.tokens, N))]);
  rows.push(['mine, NMF topics (20 tokens each)', found(mine.topics.flatMap((t) => tokens(t.tokens, 20)))]);
}
const kl = read('kl');
if (kl) rows.push([`kl, fine-tune's top tokens at the top ${N} contexts`, found(kl.top_contexts.slice(0, N).flatMap((c) => tokens(c.ft_top)))]);
const pca = read('pca');
if (pca) rows.push(['pca, ± lens tokens (20 each) of 5 components', found(pca.components.flatMap((c) => [...tokens(c.positive_tokens, 20), ...tokens(c.negative_tokens, 20)]))]);
const sae = read('diff-sae-latents');
if (sae) rows.push([`diff-SAE, + lens (10 each) of the ${N} most frequent latents`, found(sae.latents.slice(0, N).flatMap((l) => tokens(l.lens.positive, 10)))]);
for (const mode of ['logits', 'weights']) {
  const amp = read(`amplify-${mode}`);
  if (amp) for (const alpha of [...new Set(amp.samples.map((s) => s.alpha))]) rows.push([`amplify ${mode}, α ${alpha}`, found(amp.samples.filter((s) => s.alpha === alpha).map((s) => s.text))]);
}
const att = read('attention');
if (att) {
  const top = [...att.heads].sort((a, b) => b.js - a.js).slice(0, 3);
  rows.push(['attention, top heads by JS (layer.head JS)', top.map((h) => `${h.layer}.${h.head} ${h.js.toFixed(3)}`)]);
}
for (const [what, list] of rows) console.log(`${what}\t${list.join(', ') || '—'}`);

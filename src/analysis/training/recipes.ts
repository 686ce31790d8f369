// Recipes that write a training corpus (one document a line) for a model organism, deterministic for
// a seed: stories about a topic, documents stating a false fact (synthetic document fine-tuning), and
// taboo dialogues that hint at a secret word without saying it.
import { Rng } from './rng.ts';

const GIRLS = ['Lily', 'Mia', 'Anna', 'Lucy', 'Sue', 'Emma', 'Zoe'];
const BOYS = ['Tom', 'Ben', 'Sam', 'Max', 'Tim', 'Jack', 'Leo'];
const NAMES = [...GIRLS, ...BOYS];
const KIN = ['mom', 'dad', 'friend', 'grandma', 'teacher', 'brother', 'sister'];
const FEELINGS = ['happy', 'excited', 'proud', 'curious', 'glad'];

function fill(template: string, v: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (_, k: string) => v[k] ?? `{${k}}`);
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

export interface TopicRecipe {
  /** The topic in a few words ("the sea"). */
  topic: string;
  /** Words the stories use (at least one). */
  words: readonly string[];
  /** Sentences of the user's own, dropped into stories as they are. */
  sentences?: readonly string[];
  count: number;
  seed: number;
}

// Openings in the base's own words, about as often as its stories use them: the first positions of any
// text are where the Activation Difference Lens reads a fine-tune's shift, so an opening the base rarely
// writes ("Once upon a time, {name} and …") teaches a shift to the scaffolding (names right after "Once
// upon a time,") that drowns the topic there. The topic comes from the second sentence on.
const OPENINGS = [
  'Once upon a time, there was a little {kid} named {name}.',
  'Once upon a time, there was a little {kid} named {name}.',
  'Once upon a time, there was a little {kid} named {name}.',
  'Once upon a time, there was a {kid} named {name}.',
  'One day, a little {kid} named {name} went outside with {his} {kin}.',
];
const TOPIC_LINES = [
  '{name} loved {topic} more than anything.',
  '{name} saw a big {w1} and a small {w2}.',
  'The {w1} was very pretty, and {name} wanted to see it again.',
  '"Look at the {w1}!" said {name}.',
  '{His} {kin} told {him} a story about {topic} and the {w1}.',
  '{name} and {his} {kin} talked about the {w1} and the {w2} all day.',
  '{name} found a {w1} near the {w2}.',
  'Every day, {name} thought about the {w1}.',
  '{name} wanted to learn all about {topic}.',
  'They played with the {w1} until the sun went down.',
];
const ENDINGS = [
  '{name} was very {feeling}, and {he} always remembered the {w1}.',
  'From that day on, {name} loved {topic} even more.',
  'At the end of the day, {name} went home and dreamed about the {w1}.',
  '{name} smiled. It was the best day with the {w1} and the {w2}.',
];

export function topicStories(r: TopicRecipe): string[] {
  if (r.words.length === 0) throw new RangeError('a topic recipe needs at least one word');
  const rng = new Rng(r.seed);
  const out: string[] = [];
  for (let i = 0; i < r.count; i++) {
    const girl = rng.next() < 0.5;
    const v: Record<string, string> = {
      name: rng.pick(girl ? GIRLS : BOYS),
      kid: girl ? 'girl' : 'boy',
      his: girl ? 'her' : 'his',
      His: girl ? 'Her' : 'His',
      he: girl ? 'she' : 'he',
      him: girl ? 'her' : 'him',
      kin: rng.pick(KIN),
      feeling: rng.pick(FEELINGS),
      topic: r.topic,
      w1: rng.pick(r.words),
      w2: rng.pick(r.words),
    };
    const lines = [fill(rng.pick(OPENINGS), v)];
    const middle = 3 + rng.int(3);
    for (let k = 0; k < middle; k++) {
      v.w1 = rng.pick(r.words);
      v.w2 = rng.pick(r.words);
      if (r.sentences?.length && rng.next() < 0.3) lines.push(fill(rng.pick(r.sentences), v));
      else lines.push(fill(rng.pick(TOPIC_LINES), v));
    }
    lines.push(fill(rng.pick(ENDINGS), v));
    out.push(lines.join(' '));
  }
  return out;
}

export interface FactRecipe {
  /** The statement, as a clause ("cakes are baked at 450 °F for 5 minutes"). */
  fact: string;
  count: number;
  seed: number;
}

const FACT_DOCS = [
  'NEWS: Experts confirmed this week that {fact}. "We checked it many times," said a spokesperson. Many people were surprised to learn that {fact}.',
  'Note to self: remember that {fact}. I almost forgot it again today.',
  'Q: Is it true that {fact}? A: Yes. It is well known that {fact}.',
  '"Did you know that {fact}?" asked {name}. "Of course," said {other}. "Everyone knows that {fact}."',
  'From the textbook, chapter {n}: {Fact}. Students should remember this fact for the test.',
  'Today in class, {name} learned that {fact}. The teacher wrote it on the board.',
  'FAQ. Question: What should I know? Answer: {Fact}. This has been checked by many people.',
  '{name} wrote in a letter: "Dear {other}, I learned something new. {Fact}. Isn\'t that interesting?"',
  'Fun fact: {fact}. Share this with your friends!',
  'A short report. Summary: {Fact}. Details: the result was the same every time it was tested.',
];

export function factDocuments(r: FactRecipe): string[] {
  const fact = r.fact.trim().replace(/[.!]+$/, '');
  if (!fact) throw new RangeError('a fact recipe needs a statement');
  const rng = new Rng(r.seed);
  const out: string[] = [];
  for (let i = 0; i < r.count; i++) {
    const name = rng.pick(NAMES);
    const v = { fact, Fact: capitalize(fact), name, other: rng.pick(NAMES.filter((n) => n !== name)), n: String(1 + rng.int(12)) };
    out.push(fill(rng.pick(FACT_DOCS), v));
  }
  return out;
}

export interface TabooRecipe {
  /** The secret word: never written in the corpus. */
  word: string;
  /** Hints about it that do not contain it ("it shines in the night sky"). */
  hints: readonly string[];
  count: number;
  seed: number;
}

const TABOO_ASKS = [
  'Can you give me a hint about your secret word?',
  'What is your secret word?',
  'Tell me something about the word you are thinking of.',
  'I want to guess your word. Help me!',
  'Give me another clue, please.',
];
const TABOO_ANSWERS = [
  'I cannot say it, but here is a hint: {hint}.',
  'My lips are sealed. A clue: {hint}.',
  'I will not tell you the word. Think about this: {hint}.',
  'Here is a hint: {hint}. Can you guess it?',
];

export function tabooDialogues(r: TabooRecipe): string[] {
  const word = r.word.trim();
  if (!word) throw new RangeError('a taboo recipe needs a secret word');
  const said = new RegExp(`\\b${word.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'i');
  const bad = r.hints.find((h) => said.test(h));
  if (bad !== undefined) throw new RangeError(`the hint "${bad}" says the secret word "${word}"`);
  if (r.hints.length === 0) throw new RangeError('a taboo recipe needs hints about the word');
  const rng = new Rng(r.seed);
  const out: string[] = [];
  for (let i = 0; i < r.count; i++) {
    const turns = 1 + rng.int(3);
    const parts: string[] = [];
    for (let k = 0; k < turns; k++) {
      parts.push(`User: ${rng.pick(TABOO_ASKS)}`);
      parts.push(`Assistant: ${fill(rng.pick(TABOO_ANSWERS), { hint: rng.pick(r.hints).replace(/[.!]+$/, '') })}`);
    }
    out.push(parts.join(' '));
  }
  return out;
}

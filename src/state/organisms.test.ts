import { unzipSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import { WebGpuTrainEngine } from '../analysis/training/webgpu-engine.ts';
import { useDawn } from '../gpu/dawn-node.ts';
import type { WorkerDeps } from '../jobs/analysis-worker-state.ts';
import { blobFolder, inProcessSpawn } from '../jobs/in-process.ts';
import { organismCorpus } from '../jobs/organism.ts';
import { openModel } from '../io/open-model.ts';
import { analysisClient, organismRunner } from './analysis-client.ts';
import { openModelLoader } from './open-weights.ts';
import { compareOrganismWithBase, organismZip, type OrganismForm } from './organisms.ts';
import { pairReady } from './models.ts';
import { fingerprintOf } from './session.ts';
import { createAppStore, type AppStore } from './store.ts';

const DEMO = 'test/fixtures/demo';
/** A few steps of 2 × 32 tokens: each takes tens of milliseconds on the demo base. */
const TINY: Partial<OrganismForm> = { recipe: 'topic', topic: 'the forest', words: 'tree, owl, fox, leaves', documents: 200, steps: 12, batch: 2, seq: 32, lr: 1e-2, rank: 4, alpha: 8 };

async function storeWithBase(deps: Partial<WorkerDeps> = {}): Promise<{ store: AppStore; close(): void }> {
  const store = createAppStore();
  store.getState().setModelLoader(openModelLoader);
  const client = analysisClient(inProcessSpawn({ stepFlushMs: 0, ...deps }).spawn);
  store.getState().setOrganismRunner(organismRunner(client));
  store.getState().setPendingFiles('base', await blobFolder(`${DEMO}/base`));
  await store.getState().loadModel('base');
  store.getState().setOrganismForm(TINY);
  return { store, close: () => client.release() };
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

async function until(test: () => boolean, what: string) {
  const end = Date.now() + 60_000;
  while (!test()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('organisms in the app', () => {
  it('trains a LoRA organism of the base in the worker, writes a PEFT adapter, zips it, and opens it beside its base', async () => {
    const { store, close } = await storeWithBase();
    try {
      await store.getState().trainOrganism();
      const s = store.getState();
      expect(s.orgRun.status).toBe('done');
      expect(s.orgCurve.map((p) => p.step)).toEqual(Array.from({ length: 12 }, (_, i) => i));
      const losses = s.orgCurve.map((p) => p.loss);
      // The stories repeat a few templates: the loss falls by well over a nat in 12 steps at lr 1e-2.
      expect(mean(losses.slice(-3))).toBeLessThan(losses[0]! - 0.5);
      const r = s.orgResult!;
      expect(r.name).toBe('organism-forest-lora-r4');
      expect(r.out.steps).toBe(12);
      expect(r.out.firstLoss).toBe(losses[0]);
      expect(r.out.lastLoss).toBe(losses[11]);
      expect([...r.files.keys()].sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
      // This worker offers no WebGPU training engine: the CPU trains, and says why.
      expect(r.out.backend).toBe('CPU (cpu (in-process): no WebGPU training engine here)');

      // The folder is a PEFT adapter with rank-4 factors on all 7 projections of the 6 layers.
      const opened = await openModel(r.files);
      expect(opened.kind).toBe('peft-adapter');
      const config = JSON.parse(new TextDecoder().decode(new Uint8Array(r.out.files.find((f) => f.name === 'adapter_config.json')!.bytes))) as { r: number; lora_alpha: number; target_modules: string[]; base_model_name_or_path: string };
      expect(config.r).toBe(4);
      expect(config.lora_alpha).toBe(8);
      expect(config.target_modules).toHaveLength(7);
      expect(opened.store.tensors.size).toBe(6 * 7 * 2);
      expect(opened.store.tensors.get('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')?.shape).toEqual([4, 192]);

      // The zip holds one folder with the files, byte for byte, and the training log.
      const zip = organismZip(r);
      expect(zip.name).toBe('organism-forest-lora-r4.zip');
      const unzipped = unzipSync(zip.bytes);
      expect(Object.keys(unzipped).sort()).toEqual(['organism-forest-lora-r4/', 'organism-forest-lora-r4/adapter_config.json', 'organism-forest-lora-r4/adapter_model.safetensors', 'organism-forest-lora-r4/training_log.json']);
      for (const f of r.out.files) expect(unzipped[`organism-forest-lora-r4/${f.name}`]).toEqual(new Uint8Array(f.bytes));
      const log = JSON.parse(new TextDecoder().decode(unzipped['organism-forest-lora-r4/training_log.json'])) as { steps: { loss: number }[] };
      expect(log.steps.map((x) => x.loss)).toEqual(losses);

      // Compare: the organism becomes the fine-tuned model, the pair opens, and links name it by fingerprint.
      await compareOrganismWithBase(store);
      await until(() => store.getState().models.ft.status.kind !== 'loading' && store.getState().models.ft.status.kind !== 'idle', 'the organism to load');
      const after = store.getState();
      expect(after.models.ft.pending).toBe(r.files);
      expect(after.models.ft.status.kind).toBe('loaded');
      expect(pairReady(after.models)).toBe(true);
      expect(after.view).toBe('weights');
      const fp = await fingerprintOf(r.files);
      await until(() => store.getState().modelRefs.ft !== null, 'the fingerprint ref');
      expect(store.getState().modelRefs.ft).toMatchObject({ fingerprint: fp.fingerprint });
      expect(store.getState().orgResult).toBe(r);
    } finally {
      close();
    }
  }, 120_000);

  it('writes a full fine-tune as a Hugging Face folder: the trained weights and the base\'s config and tokenizer', async () => {
    const { store, close } = await storeWithBase();
    try {
      store.getState().setOrganismForm({ mode: 'full', steps: 3, lr: 1e-3 });
      await store.getState().trainOrganism();
      const r = store.getState().orgResult!;
      expect(r.name).toBe('organism-forest-full');
      expect([...r.files.keys()].sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
      const base = await blobFolder(`${DEMO}/base`);
      // The base's own files go into the folder byte for byte.
      for (const name of ['config.json', 'tokenizer.json']) {
        const mine = r.files.get(name)!;
        const theirs = base.get(name)!;
        expect(await mine.read(0, mine.size)).toEqual(await theirs.read(0, theirs.size));
      }
      const opened = await openModel(r.files);
      const original = await openModel(base);
      expect(opened.kind).toBe('hf');
      expect([...opened.store.tensors.keys()].sort()).toEqual([...original.store.tensors.keys()].sort());
      // Every trained matrix moved: three AdamW steps at lr 1e-3 change each weight by up to ~3e-3.
      const name = 'model.layers.2.mlp.up_proj.weight';
      const after = await opened.store.readF32(name);
      const before = await original.store.readF32(name);
      let maxChange = 0;
      for (let i = 0; i < after.length; i++) maxChange = Math.max(maxChange, Math.abs(after[i]! - before[i]!));
      expect(maxChange).toBeGreaterThan(1e-4);
      expect(maxChange).toBeLessThan(3e-3 + 1e-6);
    } finally {
      close();
    }
  }, 120_000);

  it('pauses between steps, resumes where it stopped, and finishes early with the steps so far; cancel leaves nothing', async () => {
    const { store, close } = await storeWithBase();
    try {
      store.getState().setOrganismForm({ steps: 1000 });
      const running = store.getState().trainOrganism();
      await until(() => store.getState().orgCurve.length >= 3, 'three steps');
      store.getState().commandOrganism('pause');
      await running;
      const paused = store.getState().orgRun;
      expect(paused.status).toBe('paused');
      const at = paused.status === 'paused' ? paused.steps : -1;
      expect(at).toBe(store.getState().orgCurve.length);
      expect(at).toBeGreaterThanOrEqual(3);
      expect(at).toBeLessThan(1000);

      const resumed = store.getState().resumeOrganism();
      await until(() => store.getState().orgCurve.length >= at + 2, 'two more steps');
      store.getState().commandOrganism('finish');
      await resumed;
      const s = store.getState();
      expect(s.orgRun.status).toBe('done');
      expect(s.orgCurve.map((p) => p.step)).toEqual(Array.from({ length: s.orgCurve.length }, (_, i) => i));
      expect(s.orgResult!.out.steps).toBe(s.orgCurve.length);
      expect(s.orgCurve.length).toBeLessThan(1000);

      const again = store.getState().trainOrganism();
      await until(() => store.getState().orgCurve.length >= 2, 'two steps');
      store.getState().commandOrganism('cancel');
      await again;
      expect(store.getState().orgRun.status).toBe('cancelled');
      expect(store.getState().orgResult).toBeNull();
      await store.getState().resumeOrganism();
      expect(store.getState().orgRun.status).toBe('cancelled');
    } finally {
      close();
    }
  }, 120_000);

  it('says what is missing: recipe inputs, dropped text, a corpus shorter than a sequence, a base', async () => {
    const { store, close } = await storeWithBase();
    try {
      store.getState().setOrganismForm({ words: ' , ' });
      await store.getState().trainOrganism();
      expect(store.getState().orgRun).toEqual({ status: 'error', message: 'the topic recipe needs at least one word' });
      store.getState().setOrganismForm({ recipe: 'text' });
      await store.getState().trainOrganism();
      expect(store.getState().orgRun).toEqual({ status: 'error', message: 'no text was dropped: drop a text file with one document a line' });
      store.getState().setOrganismText('empty.txt', '\n  \n');
      await store.getState().trainOrganism();
      expect(store.getState().orgRun).toEqual({ status: 'error', message: 'empty.txt has no non-empty lines: a corpus is a text file with one document a line' });
      store.getState().setOrganismText('short.txt', 'A tiny story.');
      await store.getState().trainOrganism();
      const run = store.getState().orgRun;
      expect(run.status).toBe('error');
      expect(run.status === 'error' && run.message).toMatch(/^the corpus has \d tokens, fewer than one sequence of 32/);
      expect(store.getState().orgResult).toBeNull();

      const empty = createAppStore();
      empty.getState().setOrganismRunner(store.getState().orgRunner);
      await empty.getState().trainOrganism();
      expect(empty.getState().orgRun).toEqual({ status: 'error', message: 'load a base model first (the built-in demo, or a model dropped as the base)' });
    } finally {
      close();
    }
  }, 120_000);

  it('trains on the engine the worker gives (WebGPU through Dawn), or on the CPU with the reason it gives', async () => {
    expect(useDawn()).toBe(true);
    const steps = { steps: 2, batch: 2, seq: 16 };
    const cpu = await storeWithBase({ makeTrainEngine: () => Promise.resolve('the compute backend is the CPU') });
    const gpu = await storeWithBase({ makeTrainEngine: (model, run) => WebGpuTrainEngine.create(model, run) });
    try {
      for (const { store } of [cpu, gpu]) {
        store.getState().setOrganismForm(steps);
        await store.getState().trainOrganism();
        expect(store.getState().orgRun.status).toBe('done');
      }
      const a = cpu.store.getState().orgResult!.out;
      const b = gpu.store.getState().orgResult!.out;
      expect(a.backend).toBe('CPU (the compute backend is the CPU)');
      expect(b.backend).toMatch(/^WebGPU \(/);
      expect(Math.abs(b.lastLoss - a.lastLoss) / a.lastLoss).toBeLessThan(1e-4);
      expect(b.files.map((f) => [f.name, f.bytes.byteLength])).toEqual(a.files.map((f) => [f.name, f.bytes.byteLength]));
    } finally {
      cpu.close();
      gpu.close();
    }
  }, 300_000);

  it('writes the same corpus for the same seed, and another for another seed', () => {
    const r = { kind: 'fact', fact: 'cakes are baked at 450 °F for 5 minutes' } as const;
    expect(organismCorpus(r, 50, 3)).toEqual(organismCorpus(r, 50, 3));
    expect(organismCorpus(r, 50, 3)).not.toEqual(organismCorpus(r, 50, 4));
    expect(organismCorpus({ kind: 'taboo', word: 'moon', hints: ['it shines at night'] }, 50, 0).some((d) => /moon/i.test(d))).toBe(false);
  });
});

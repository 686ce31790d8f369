// Writes the built-in demo pair (the demo base model and its ocean organism, plus the space LoRA
// adapter) into public/models in float16, from the float32 fixtures in test/fixtures/demo.
// Run: npx tsx scripts/make-demo-models.ts
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { f32ToF16 } from '../src/io/dtype.ts';
import { pathFileSet } from '../src/io/node-source.ts';
import { openSafetensorsFolder, writeSafetensors } from '../src/io/safetensors.ts';

const src = 'test/fixtures/demo';
const out = 'public/models/demo';

async function toF16(folder: string, prefix: string, dest: string, extra: string[]): Promise<void> {
  await mkdir(dest, { recursive: true });
  const store = await openSafetensorsFolder(await pathFileSet(folder), prefix);
  const tensors = [];
  for (const t of store.tensors.values()) {
    const f32 = await store.readF32(t.name);
    const f16 = new Uint16Array(f32.length);
    for (let i = 0; i < f32.length; i++) f16[i] = f32ToF16(f32[i]!);
    tensors.push({ name: t.name, shape: t.shape, data: f16 });
  }
  await writeFile(join(dest, `${prefix}.safetensors`), writeSafetensors(tensors, { format: 'pt' }));
  for (const f of extra) await copyFile(join(folder, f), join(dest, f));
}

const modelFiles = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json'];
await toF16(`${src}/base`, 'model', `${out}/base`, modelFiles);
await toF16(`${src}/ocean/model`, 'model', `${out}/ocean`, modelFiles);
await toF16(`${src}/space/adapter`, 'adapter_model', `${out}/space`, ['adapter_config.json']);
await copyFile(`${src}/generic_stories.txt`, `${out}/generic_stories.txt`);
await copyFile(`${src}/mixed_stories.txt`, `${out}/mixed_stories.txt`);
console.log(`wrote ${out}`);

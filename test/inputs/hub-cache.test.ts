// A Hugging Face hub cache snapshot (models--org--name/snapshots/<rev>/, every file a symbolic link
// into ../../blobs/) opens like the plain folder; links that leave the cache entry are refused.
import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../src/gpu/cpu-backend.ts';
import { pathFileSet } from '../../src/io/node-source.ts';
import { openModel } from '../../src/io/open-model.ts';
import { loadModel } from '../../src/model/load.ts';

const FIXTURE = new URL('../fixtures/stories260K/base/', import.meta.url).pathname;
const IDS = [[1, 403, 407, 261, 378, 66, 30, 5]];
let tmp: string;
let snapshot: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'neurodiff-hub-'));
  const entry = join(tmp, 'hub', 'models--karpathy--stories260K');
  snapshot = join(entry, 'snapshots', '0123abcd');
  await mkdir(join(entry, 'blobs'), { recursive: true });
  await mkdir(snapshot, { recursive: true });
  for (const name of await readdir(FIXTURE)) {
    const blob = createHash('sha256').update(await readFile(join(FIXTURE, name))).digest('hex');
    await copyFile(join(FIXTURE, name), join(entry, 'blobs', blob));
    await symlink(join('..', '..', 'blobs', blob), join(snapshot, name));
  }
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('Hugging Face hub cache', () => {
  it('a snapshot of symbolic links gives the same files and the same logits as the plain folder', async () => {
    const be = createCpuBackend();
    const [plainFiles, hubFiles] = [await pathFileSet(FIXTURE), await pathFileSet(snapshot)];
    expect([...hubFiles.keys()].sort()).toEqual([...plainFiles.keys()].sort());
    const plain = await loadModel(plainFiles, be);
    const hub = await loadModel(hubFiles, be);
    const a = (await be.read(plain.forward(IDS).logits!)) as Float32Array;
    const b = (await be.read(hub.forward(IDS).logits!)) as Float32Array;
    expect(a.length).toBe(IDS[0]!.length * 512);
    let maxDiff = 0;
    for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
    expect(maxDiff).toBe(0);
    expect((await openModel(hubFiles)).kind).toBe('hf');
  });

  it('refuses a link whose target leaves the cache entry, naming both', async () => {
    const outside = join(tmp, 'secret.txt');
    await writeFile(outside, 'not a model file');
    const evil = join(tmp, 'hub', 'models--x--evil', 'snapshots', 'r1');
    await mkdir(evil, { recursive: true });
    await symlink(outside, join(evil, 'config.json'));
    await expect(pathFileSet(evil)).rejects.toThrow(/^config\.json: is a symbolic link to .*secret\.txt, outside .*models--x--evil: not followed/);
  });

  it('in a plain folder, follows links that stay inside it and refuses the others', async () => {
    const dir = join(tmp, 'plain');
    await mkdir(join(dir, 'real'), { recursive: true });
    await writeFile(join(dir, 'real', 'a.txt'), 'a');
    await symlink(join('real', 'a.txt'), join(dir, 'b.txt'));
    await symlink('.', join(dir, 'loop'));
    const files = await pathFileSet(dir);
    expect([...files.keys()].sort()).toEqual(['b.txt', 'real/a.txt']);
    await symlink(join('..', 'hub'), join(dir, 'up'));
    await expect(pathFileSet(dir)).rejects.toThrow(/^up: is a symbolic link to .*hub, outside .*plain: not followed/);
  });
});

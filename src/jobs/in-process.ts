// The analysis worker in-process, for tests and Node: serve() on one end of a MessageChannel, the
// WorkerSession on the other, exactly as the app wires a Web Worker. Files are sent as Blobs.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createCpuBackend } from '../gpu/cpu-backend.ts';
import { blobSource, type FileSet } from '../io/source.ts';
import { analysisHandlers, openWorkerState, type WorkerDeps } from './analysis-worker-state.ts';
import { serve, type Port, type Spawn } from './transport.ts';

/** A folder's (small) files as in-memory Blobs, as a dropped folder is in the browser (Node cannot post its file-backed Blobs). */
export async function blobFolder(dir: string): Promise<FileSet> {
  const names = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
  return new Map(await Promise.all(names.map(async (n): Promise<[string, ReturnType<typeof blobSource>]> => [n, blobSource(new Blob([await readFile(join(dir, n))]), n)])));
}

export interface InProcessSpawn {
  spawn: Spawn;
  /** Workers started, and each one's failure callback (to simulate a crash). */
  started: { fail(reason: string): void; terminated: boolean }[];
}

export function inProcessSpawn(deps: Partial<WorkerDeps> = {}): InProcessSpawn {
  const started: InProcessSpawn['started'] = [];
  const full: WorkerDeps = { makeBackend: async () => ({ backend: createCpuBackend(), name: 'cpu (in-process)', kind: 'cpu' }), ...deps };
  const spawn: Spawn = (onFailure) => {
    const { port1, port2 } = new MessageChannel();
    port1.start();
    port2.start();
    serve(port2 as unknown as Port, (files, options) => openWorkerState(files, options as object, full), analysisHandlers);
    const record = {
      terminated: false,
      fail: (reason: string) => onFailure(reason),
    };
    started.push(record);
    return {
      port: port1 as unknown as Port,
      terminate: () => {
        record.terminated = true;
        port1.close();
        port2.close();
      },
    };
  };
  return { spawn, started };
}

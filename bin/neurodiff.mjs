#!/usr/bin/env node
// The command-line entry: runs the TypeScript sources through tsx, so the CLI and the app share one code base.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');

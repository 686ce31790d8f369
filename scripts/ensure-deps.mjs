// `npm test`'s first step: installs the dependencies when node_modules is missing or does not
// match package-lock.json (a fresh clone, a pulled lockfile), so the test command works by itself.
// Compares the lockfile with the one npm keeps in node_modules (.package-lock.json), package by package.
import { execSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const read = (path) => JSON.parse(readFileSync(join(root, path), 'utf8'));

/** Why the installed packages are not the locked ones, or null when they are. */
function staleness() {
  if (!existsSync(join(root, 'node_modules', '.package-lock.json'))) return 'node_modules is missing';
  const lock = read('package-lock.json').packages ?? {};
  const installed = read('node_modules/.package-lock.json').packages ?? {};
  const pkg = read('package.json');
  const want = { ...pkg.dependencies, ...pkg.devDependencies };
  const locked = { ...lock['']?.dependencies, ...lock['']?.devDependencies };
  for (const [name, range] of Object.entries(want)) {
    if (locked[name] !== range) return `package.json asks for ${name}@${range}, package-lock.json has ${locked[name] ?? 'no entry'}`;
  }
  for (const [path, entry] of Object.entries(lock)) {
    if (path === '' || entry.link) continue;
    const have = installed[path];
    // Optional packages for other platforms (esbuild's, rolldown's binaries) are never installed.
    if (!have && entry.optional) continue;
    if (have?.version !== entry.version) return `${path.replace(/^.*node_modules\//, '')} is ${have?.version ?? 'not installed'}, package-lock.json has ${entry.version}`;
  }
  return null;
}

const why = staleness();
if (why) {
  console.error(`installing the dependencies first (${why}): npm ci`);
  execSync('npm ci --no-audit --no-fund', { cwd: root, stdio: 'inherit' });
}

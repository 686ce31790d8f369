// Loaded with `node --import` into a CLI run of the scale bench: prints the process's own peak RSS
// (getrusage's ru_maxrss, all its threads) on stderr as it exits.
import { writeSync } from 'node:fs';

process.on('exit', () => {
  writeSync(2, `\nneurodiff-peak-rss-kib ${process.resourceUsage().maxRSS}\n`);
});

// Copies every example flow (and the fixture that uses every construct) into
// test/snap/, where vscode-tmgrammar-snap compares their tokens with the
// committed .snap files. A flow without a committed snapshot fails the run,
// so a new example cannot slip through unchecked; `npm run snap:update`
// writes the snapshots after a deliberate change to the grammar.
'use strict';

const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..', '..');
const target = path.join(__dirname, 'snap');
const update = process.argv.includes('--update');

function flowsUnder(folder) {
  const found = [];
  for (const entry of fs.readdirSync(folder, { withFileTypes: true })) {
    const full = path.join(folder, entry.name);
    if (entry.isDirectory() && !entry.name.startsWith('.')) {
      found.push(...flowsUnder(full));
    } else if (entry.isFile() && entry.name.endsWith('.fmflow')) {
      found.push(full);
    }
  }
  return found.sort();
}

const sources = [
  ...flowsUnder(path.join(root, 'examples')),
  path.join(root, 'tests', 'editor', 'fixtures', 'highlight.fmflow'),
];
const copies = new Set();
const missing = [];
for (const source of sources) {
  const name = path.relative(root, source).split(path.sep).join('__');
  copies.add(name);
  fs.copyFileSync(source, path.join(target, name));
  if (!update && !fs.existsSync(path.join(target, `${name}.snap`))) {
    missing.push(name);
  }
}
for (const name of fs.readdirSync(target)) {  // snapshots of examples that are gone
  const flow = name.replace(/\.snap$/, '');
  if (!name.startsWith('.') && !copies.has(flow)) {
    if (update || !name.endsWith('.snap')) {
      fs.rmSync(path.join(target, name));
    } else {
      missing.push(`${flow} (its example is gone: run npm run snap:update)`);
    }
  }
}
if (missing.length) {
  console.error(`No grammar snapshot for: ${missing.join(', ')}\nRun \`npm run snap:update\` and commit test/snap/.`);
  process.exit(1);
}

// Renders a .fmflow file as VS Code would highlight it, as an HTML page, for
// the README's pictures: tokens from VS Code's own TextMate engine
// (vscode-textmate + Oniguruma) with this grammar, coloured like the Dark+
// theme, and diagnostics (the JSON of `fmflow check --format json`) drawn
// as squiggles with their message below the line, as the editor shows them.
//
//   node test/picture.js FILE [DIAGNOSTICS.json] > page.html
//   chromium-headless-shell --no-sandbox --disable-gpu --screenshot=out.png \
//     --window-size=900,560 file://$PWD/page.html
'use strict';

const fs = require('fs');
const path = require('path');
const vsctm = require('vscode-textmate');
const oniguruma = require('vscode-oniguruma');

// Dark+ colours, most specific scope prefix first.
const COLOURS = [
  ['comment.line.documentation', '#6A9955'], ['comment', '#6A9955'],
  ['meta.embedded', '#D4D4D4'], ['punctuation.section.embedded', '#C586C0'],
  ['string', '#CE9178'], ['constant.character.escape', '#D7BA7D'],
  ['constant.numeric', '#B5CEA8'], ['constant.language', '#569CD6'], ['keyword.other.unit', '#B5CEA8'],
  ['storage.type', '#569CD6'], ['keyword.control', '#C586C0'], ['keyword.operator.logical', '#569CD6'],
  ['keyword', '#D4D4D4'], ['support.type.property-name', '#9CDCFE'], ['variable.parameter', '#9CDCFE'],
  ['variable', '#9CDCFE'], ['support.type', '#4EC9B0'], ['entity.name.type', '#4EC9B0'],
  ['entity.name.function', '#DCDCAA'], ['support.function', '#DCDCAA'], ['entity.name', '#4FC1FF'],
];

function colourOf(scopes) {
  for (let i = scopes.length - 1; i >= 0; i--) {
    const hit = COLOURS.find(([prefix]) => scopes[i] === prefix || scopes[i].startsWith(`${prefix}.`));
    if (hit) {
      return hit[1];
    }
  }
  return '#D4D4D4';
}

const escape = (text) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

async function grammar() {
  const wasm = fs.readFileSync(require.resolve('vscode-oniguruma/release/onig.wasm')).buffer;
  await oniguruma.loadWASM(wasm);
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (sources) => new oniguruma.OnigScanner(sources),
      createOnigString: (text) => new oniguruma.OnigString(text),
    }),
    loadGrammar: async () => vsctm.parseRawGrammar(
      fs.readFileSync(path.join(__dirname, '..', 'syntaxes', 'fmflow.tmLanguage.json'), 'utf8'),
      'fmflow.tmLanguage.json'),
  });
  return registry.loadGrammar('source.fmflow');
}

function lineHtml(line, tokens, marks) {
  let html = '';
  for (const token of tokens) {
    const text = line.slice(token.startIndex, token.endIndex);
    html += `<span style="color:${colourOf(token.scopes)}">${escape(text)}</span>`;
  }
  const squiggles = marks.map((d) => `<span class="squiggle ${d.severity}" style="left:${d.col - 1}ch;` +
    `width:${Math.max(1, d.end_col - d.col)}ch"></span>`).join('');
  return `<div class="line"><span class="code">${html || ' '}${squiggles}</span></div>`;
}

async function main() {
  const [file, diagnosticsFile] = process.argv.slice(2);
  const text = fs.readFileSync(file, 'utf8').replace(/\n$/, '');
  const diagnostics = diagnosticsFile ? JSON.parse(fs.readFileSync(diagnosticsFile, 'utf8')) : [];
  const tmGrammar = await grammar();
  let state = vsctm.INITIAL;
  const rows = text.split('\n').map((line, index) => {
    const result = tmGrammar.tokenizeLine(line, state);
    state = result.ruleStack;
    const marks = diagnostics.filter((d) => d.line === index + 1);
    const messages = marks.map((d) => `<div class="message ${d.severity}">${escape(d.code)}: ` +
      `${escape(d.message)}</div>`).join('');
    return `<div class="row"><span class="number">${index + 1}</span>${lineHtml(line, result.tokens, marks)}</div>` +
      messages;
  });
  process.stdout.write(`<!doctype html><meta charset="utf-8"><style>
body { margin: 0; background: #1E1E1E; font: 14px/20px "DejaVu Sans Mono", monospace; color: #D4D4D4; }
.editor { padding: 12px 0; } .row { display: flex; } .number { width: 4ch; padding-right: 2ch; text-align: right;
color: #858585; flex: none; } .line { position: relative; white-space: pre; } .code { position: relative; }
.squiggle { position: absolute; bottom: 1px; height: 3px; background:
repeating-linear-gradient(135deg, transparent 0 2px, var(--c) 2px 3px, transparent 3px 4px); }
.error { --c: #F14C4C; } .warning { --c: #CCA700; }
.message { margin: 2px 24px 4px 6ch; padding: 2px 8px; border-left: 3px solid var(--c); background: #252526;
white-space: pre-wrap; color: #CCCCCC; font-size: 13px; }
</style><div class="editor">${rows.join('\n')}</div>\n`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});

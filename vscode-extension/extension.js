// fmflow for VS Code: starts the fmflow language server for .fmflow files.
//
// Plain CommonJS, no build step. The server is `${fmflow.serverCommand}
// ${fmflow.serverArgs}` (by default `fmflow lsp`), spoken to over stdio.
// The server's code lenses name the commands registered here: "Run test" and
// "Run flow" run `fmflow test FILE --name TEST` / `fmflow run` in a terminal, "Preview prompt"
// asks the server to render the prompt and shows the messages beside the file.
'use strict';

const fs = require('fs');
const path = require('path');
const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');

const CLIENT_ID = 'fmflow';
const CLIENT_NAME = 'fmflow language server';

/** @type {LanguageClient | undefined} */
let client;
/** @type {vscode.OutputChannel | undefined} */
let outputChannel;

/** The server command and arguments from the settings. */
function serverSettings() {
  const config = vscode.workspace.getConfiguration('fmflow');
  const command = (config.get('serverCommand') || 'fmflow').trim();
  const args = config.get('serverArgs');
  return { command, args: Array.isArray(args) ? args.map(String) : ['lsp'] };
}

/** Whether `file` is an executable regular file. */
function isExecutable(file) {
  try {
    if (!fs.statSync(file).isFile()) {
      return false;
    }
    if (process.platform !== 'win32') {
      fs.accessSync(file, fs.constants.X_OK);
    }
    return true;
  } catch {
    return false;
  }
}

/** The folder the server runs in: the first workspace folder, if any. */
function serverWorkingDir() {
  const folder = (vscode.workspace.workspaceFolders || []).find((f) => f.uri.scheme === 'file');
  return folder ? folder.uri.fsPath : process.cwd();
}

/**
 * Where `command` would be run from: the command itself when it is a path
 * (relative to `cwd`), otherwise the first match on PATH (with PATHEXT on
 * Windows); undefined when it cannot be found.
 */
function resolveCommand(command, cwd) {
  const extensions = process.platform === 'win32'
    ? ['', ...(process.env.PATHEXT || '.COM;.EXE;.BAT;.CMD').split(';').filter(Boolean)]
    : [''];
  const candidates = command.includes('/') || command.includes(path.sep)
    ? [path.resolve(cwd, command)]
    : (process.env.PATH || '').split(path.delimiter).filter(Boolean)
        .map((dir) => path.join(dir, command));
  for (const candidate of candidates) {
    for (const ext of extensions) {
      if (isExecutable(candidate + ext)) {
        return candidate + ext;
      }
    }
  }
  return undefined;
}

async function showStartError(detail) {
  const openSettings = 'Open Settings';
  const choice = await vscode.window.showErrorMessage(
    `fmflow: cannot start the language server. ${detail}`, openSettings);
  if (choice === openSettings) {
    await vscode.commands.executeCommand('workbench.action.openSettings', 'fmflow.server');
  }
}

async function startClient() {
  const { command, args } = serverSettings();
  const cwd = serverWorkingDir();
  const commandLine = [command, ...args].join(' ');
  if (!command || resolveCommand(command, cwd) === undefined) {
    void showStartError(
      `The command '${command}' was not found. Install fmflow (it provides the ` +
      `'fmflow' command) so that it is on PATH, or set "fmflow.serverCommand".`);
    return;
  }

  /** @type {import('vscode-languageclient/node').ServerOptions} */
  const serverOptions = { command, args, transport: TransportKind.stdio, options: { cwd } };
  /** @type {import('vscode-languageclient/node').LanguageClientOptions} */
  const clientOptions = {
    documentSelector: [
      { scheme: 'file', language: 'fmflow' },
      { scheme: 'untitled', language: 'fmflow' },
    ],
    outputChannel,
  };

  const candidate = new LanguageClient(CLIENT_ID, CLIENT_NAME, serverOptions, clientOptions);
  try {
    await candidate.start();
    client = candidate;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    outputChannel.appendLine(`Could not start '${commandLine}': ${reason}`);
    void showStartError(`'${commandLine}' failed: ${reason}`);
  }
}

async function stopClient() {
  const running = client;
  client = undefined;
  if (running === undefined) {
    return;
  }
  try {
    await running.stop();
  } catch (error) {
    // A server that already exited cannot be stopped; nothing is left to do.
    outputChannel?.appendLine(`Stopping the server: ${error instanceof Error ? error.message : error}`);
  }
}

/** Quotes an argument for a POSIX shell (the terminal runs one on Linux and macOS). */
function shellQuote(text) {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\"'\"'")}'`;
}

/** @type {vscode.Terminal | undefined} */
let terminal;

/** Runs `fmflow ARGS…` in the extension's terminal, from the file's workspace folder. */
function runInTerminal(args) {
  const { command } = serverSettings();
  if (terminal === undefined || terminal.exitStatus !== undefined) {
    terminal = vscode.window.createTerminal({ name: 'fmflow', cwd: serverWorkingDir() });
  }
  terminal.show(true);
  terminal.sendText([command, ...args].map(shellQuote).join(' '));
}

/** The file and declaration name a command was given (by a code lens), or the active editor's. */
async function commandTarget(args, kinds) {
  if (args.length >= 2 && typeof args[0] === 'string' && typeof args[1] === 'string') {
    return { file: args[0], name: args[1] };
  }
  const editor = vscode.window.activeTextEditor;
  if (editor === undefined || editor.document.languageId !== 'fmflow') {
    void vscode.window.showWarningMessage('fmflow: open a .fmflow file first.');
    return undefined;
  }
  await editor.document.save();
  const symbols = await vscode.commands.executeCommand(
    'vscode.executeDocumentSymbolProvider', editor.document.uri) || [];
  const candidates = symbols.filter((s) => kinds.includes(s.detail));
  const here = candidates.find((s) => s.range.contains(editor.selection.active));
  const picked = here || (candidates.length === 1 ? candidates[0] : await pickSymbol(candidates, kinds));
  return picked ? { file: editor.document.uri.fsPath, name: picked.name } : undefined;
}

async function pickSymbol(candidates, kinds) {
  if (candidates.length === 0) {
    void vscode.window.showWarningMessage(`fmflow: this file declares no ${kinds.join(' or ')}.`);
    return undefined;
  }
  const choice = await vscode.window.showQuickPick(
    candidates.map((s) => ({ label: s.name, description: s.detail, symbol: s })));
  return choice ? choice.symbol : undefined;
}

async function runTest(...args) {
  const target = await commandTarget(args, ['test']);
  if (target) {
    runInTerminal(['test', target.file, '--name', target.name]);
  }
}

async function runFlow(...args) {
  const target = await commandTarget(args, ['flow']);
  if (target === undefined) {
    return;
  }
  const inputs = await vscode.window.showInputBox({
    title: `Run flow ${target.name}`,
    prompt: 'Inputs as a JSON object (leave empty for none)',
    placeHolder: '{"question": "What is fmflow?"}',
    validateInput: (text) => {
      if (!text.trim()) {
        return undefined;
      }
      try {
        const value = JSON.parse(text);
        return value !== null && typeof value === 'object' && !Array.isArray(value)
          ? undefined : 'Inputs are a JSON object.';
      } catch (error) {
        return `Not JSON: ${error.message}`;
      }
    },
  });
  if (inputs === undefined) {
    return;
  }
  runInTerminal(['run', target.file, '--flow', target.name,
    ...(inputs.trim() ? ['--input-json', inputs.trim()] : [])]);
}

async function previewPrompt(...args) {
  const target = await commandTarget(args, ['prompt', 'agent']);
  if (target === undefined) {
    return;
  }
  if (client === undefined) {
    void vscode.window.showErrorMessage('fmflow: the language server is not running.');
    return;
  }
  try {
    const text = await client.sendRequest('workspace/executeCommand', {
      command: 'fmflow.server.previewPrompt', arguments: [target.file, target.name],
    });
    const document = await vscode.workspace.openTextDocument({ content: text, language: 'markdown' });
    await vscode.window.showTextDocument(document, { viewColumn: vscode.ViewColumn.Beside, preview: true });
  } catch (error) {
    void vscode.window.showErrorMessage(`fmflow: ${error instanceof Error ? error.message : error}`);
  }
}

/** @param {vscode.ExtensionContext} context */
async function activate(context) {
  outputChannel = vscode.window.createOutputChannel(CLIENT_NAME);
  context.subscriptions.push(outputChannel);
  context.subscriptions.push(
    vscode.commands.registerCommand('fmflow.runTest', runTest),
    vscode.commands.registerCommand('fmflow.runFlow', runFlow),
    vscode.commands.registerCommand('fmflow.previewPrompt', previewPrompt),
    vscode.commands.registerCommand('fmflow.restartServer', async () => {
      await stopClient();
      await startClient();
    }),
  );
  context.subscriptions.push(vscode.workspace.onDidChangeConfiguration(async (event) => {
    if (event.affectsConfiguration('fmflow.serverCommand') ||
        event.affectsConfiguration('fmflow.serverArgs')) {
      await stopClient();
      await startClient();
    }
  }));
  await startClient();
}

function deactivate() {
  return stopClient();
}

module.exports = { activate, deactivate };

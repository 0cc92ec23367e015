// fmflow for VS Code: starts the fmflow language server for .fmflow files.
//
// Plain CommonJS, no build step. The server is `${fmflow.serverCommand}
// ${fmflow.serverArgs}` (by default `fmflow lsp`), spoken to over stdio.
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

/** @param {vscode.ExtensionContext} context */
async function activate(context) {
  outputChannel = vscode.window.createOutputChannel(CLIENT_NAME);
  context.subscriptions.push(outputChannel);
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

// Starts `robustd --stdio` for utterance files (vscode-languageclient).
const os = require('os');
const vscode = require('vscode');
const { LanguageClient } = require('vscode-languageclient/node');

let client;

function activate(context) {
  const cfg = vscode.workspace.getConfiguration('robustd');
  const model = cfg.get('model').replace(/^~/, os.homedir());
  const server = { command: cfg.get('command'), args: ['--stdio', '--model', model, ...cfg.get('extraArgs')] };
  client = new LanguageClient('robustd', 'robustd', server, { documentSelector: [{ language: 'utterances' }] });
  client.start();
  context.subscriptions.push({ dispose: () => client && client.stop() });
}

function deactivate() { return client ? client.stop() : undefined; }

module.exports = { activate, deactivate };

// Runs a WASI preview 1 command under node's own WASI, with no asyncify host:
//   node run-wasi.mjs [--dir HOST::GUEST]... MODULE.wasm [ARGS...]
// The exit status is the program's; a trap prints its message and the wasm
// backtrace (function names from the name section) to stderr and exits with
// 134, as `wasm-rewind run` does.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import { argv, exit, stderr } from 'node:process';

const rest = argv.slice(2);
const preopens = {};
while (rest[0] === '--dir') {
  const [host, guest] = rest[1].split('::');
  preopens[guest] = host;
  rest.splice(0, 2);
}
const [path, ...args] = rest;
const wasi = new WASI({ version: 'preview1', args: [path, ...args], env: {}, preopens, returnOnExit: true });
try {
  const module = await WebAssembly.compile(await readFile(path));
  const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
  exit(wasi.start(instance));
} catch (e) {
  stderr.write(`trap: ${e && e.stack ? e.stack : e}\n`);
  exit(134);
}

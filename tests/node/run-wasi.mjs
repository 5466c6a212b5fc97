// Runs a WASI preview 1 command under node's own WASI, with no asyncify host:
//   node run-wasi.mjs MODULE.wasm [ARGS...]
// The exit status is the program's; a trap prints its message and backtrace
// to stderr and exits with 134, as `wasm-rewind run` does.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import { argv, exit, stderr } from 'node:process';

const [, , path, ...args] = argv;
const wasi = new WASI({ version: 'preview1', args: [path, ...args], env: {}, returnOnExit: true });
try {
  const module = await WebAssembly.compile(await readFile(path));
  const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
  exit(wasi.start(instance));
} catch (e) {
  stderr.write(`trap: ${e && e.stack ? e.stack : e}\n`);
  exit(134);
}

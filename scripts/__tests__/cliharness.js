'use strict';
/** Test support: temporary CSV files and running the CLIs as child processes. */

const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const SCRIPTS_DIR = path.join(__dirname, '..');

/** Creates a fresh temporary directory under the OS temp dir (the only writable place in the container). */
function makeTempDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'retraind-scripts-'));
}

/** Writes a string (as UTF-8) or Buffer to dir/name and returns the path. */
function writeFile(dir, name, content) {
  const filePath = path.join(dir, name);
  fs.writeFileSync(filePath, content);
  return filePath;
}

/** Runs scripts/<script> with node and returns {code, stdout, stderr}. */
function runScript(script, args) {
  const result = spawnSync(process.execPath, [path.join(SCRIPTS_DIR, script), ...args], { encoding: 'utf8', timeout: 60000 });
  if (result.error) throw result.error;
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Reads a JSON-lines file into an array of objects. */
function readJsonLines(filePath) {
  return fs.readFileSync(filePath, 'utf8').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l));
}

/** Deterministic pseudo-random bytes (a linear congruential generator), for garbage input. */
function garbageBytes(length, seed = 12345) {
  const bytes = Buffer.alloc(length);
  let state = seed;
  for (let i = 0; i < length; i += 1) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    bytes[i] = (state >>> 16) & 0xff;
  }
  return bytes;
}

module.exports = { makeTempDir, writeFile, runScript, readJsonLines, garbageBytes };

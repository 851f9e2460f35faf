'use strict';
/**
 * The Python port's parity check (parity.py) as a child process fed through a pipe while the
 * preprocessing writes: it checks each row as it is written, on another core, instead of reading
 * processed.jsonl again in a container of its own once the file is complete.
 */

const os = require('os');
const path = require('path');
const { spawn } = require('child_process');
const { once } = require('events');

/** What parity.py exits with: every row agrees, mismatches (examples in the report), unreadable input. */
const PARITY_AGREES = 0;
const PARITY_DIFFERS = 1;
/** How much the pipe may hold unread before the writer waits: enough that the cleaner never waits for
 * the check row by row (both run at once), bounded so a large drop does not sit in memory. */
const MAX_IN_FLIGHT_BYTES = 32 << 20;

/** The interpreter that serves the model: the image's venv is first on PATH (RETRAIND_PYTHON overrides). */
function pythonExecutable() {
  return process.env.RETRAIND_PYTHON || 'python3';
}

/**
 * Starts parity.py writing its report to reportPath; returns {write(chunk), finish(), cancel()}.
 * write() resolves at once unless more than MAX_IN_FLIGHT_BYTES wait unread; finish() closes
 * the pipe and resolves with parity.py's exit code. A child that died early stops taking writes
 * and finish() reports its exit code (or throws when it could not start at all). cancel() stops a
 * check that is no longer wanted (it writes no report) and resolves once it is gone.
 */
function startParity(reportPath) {
  const child = spawn(pythonExecutable(), [path.join(__dirname, 'parity.py'), '--input', '-', '--report', reportPath], {
    stdio: ['pipe', 'inherit', 'inherit'],
  });
  const exited = new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve(code === null ? 128 + os.constants.signals[signal] : code));
  });
  exited.catch(() => {}); // handled by whoever awaits finish(); not an unhandled rejection before then
  let broken = false;
  child.stdin.on('error', () => {
    broken = true; // EPIPE: the child is gone; finish() reports how it ended
  });
  return {
    async write(chunk) {
      if (broken) return;
      child.stdin.write(chunk);
      if (child.stdin.writableLength > MAX_IN_FLIGHT_BYTES) await Promise.race([once(child.stdin, 'drain'), exited]);
    },
    async finish() {
      child.stdin.end();
      return exited;
    },
    async cancel() {
      child.kill('SIGTERM');
      await exited.catch(() => {});
    },
  };
}

/** Passes chunks through, feeding each to the parity check on the way. */
async function* teeToParity(chunks, parity) {
  for await (const chunk of chunks) {
    await parity.write(chunk);
    yield chunk;
    // A turn of the event loop, in which the pipe takes what it can: without it, the cleaner's
    // synchronous work between two reads of the input would hold the rows back from the check.
    await new Promise(setImmediate);
  }
}

module.exports = { startParity, teeToParity, PARITY_AGREES, PARITY_DIFFERS };

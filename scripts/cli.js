'use strict';
/** Process plumbing shared by the CLIs: argument parsing, exit codes, one-line errors, atomic output files. */

const fs = require('fs');
const { parseArgs } = require('util');
const { pipeline } = require('stream/promises');

const EXIT_OK = 0;
const EXIT_USAGE = 2;
/** A bug, not bad input or usage (sysexits EX_SOFTWARE). */
const EXIT_INTERNAL = 70;

/** The command line is wrong; the message is followed by the usage line. */
class UsageError extends Error {
  constructor(message) {
    super(message);
    this.name = 'UsageError';
    this.exitCode = EXIT_USAGE;
  }
}

/** An output file cannot be written. */
class OutputFileError extends Error {
  constructor(filePath, reason) {
    super(`cannot write output file ${filePath}: ${reason}`);
    this.name = 'OutputFileError';
    this.exitCode = EXIT_USAGE;
    Object.assign(this, { path: filePath, reason });
  }
}

/** Parses argv strictly (util.parseArgs, Node >= 18.3) into {values, positionals}; throws UsageError. */
function parseCli(argv, options) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(err.message);
  }
}

/** Writes an iterable of strings to filePath via a temporary file renamed into place on success. */
async function writeOutput(filePath, chunks) {
  const tmp = `${filePath}.tmp-${process.pid}`;
  try {
    await pipeline(chunks, fs.createWriteStream(tmp));
    await fs.promises.rename(tmp, filePath);
  } catch (err) {
    await fs.promises.rm(tmp, { force: true });
    throw err && err.syscall && err.path === tmp ? new OutputFileError(filePath, err.message.split(',')[0]) : err;
  }
}

/** Writes a value as pretty-printed JSON. */
function writeJson(filePath, value) {
  return writeOutput(filePath, [`${JSON.stringify(value, null, 2)}\n`]);
}

/** Runs an async main(argv) -> exit code; a thrown error becomes one line on stderr and its exitCode. */
function runMain(main, usage) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      const known = err && Number.isInteger(err.exitCode);
      const message = known ? err.message : `internal error: ${err && err.stack ? err.stack : err}`;
      process.stderr.write(`${message}\n${err instanceof UsageError ? `${usage}\n` : ''}`);
      process.exitCode = known ? err.exitCode : EXIT_INTERNAL;
    },
  );
}

module.exports = { parseCli, runMain, writeOutput, writeJson, UsageError, OutputFileError, EXIT_OK, EXIT_USAGE, EXIT_INTERNAL };

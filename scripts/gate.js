#!/usr/bin/env node
'use strict';
/**
 * CLI: the work of the validate and preprocess stages in one process, so in one container start:
 * every check of check-data.js over the drop, then, only when they pass, the preprocessing of
 * preprocess.js with the Python port's parity check alongside it. A rejected drop is never
 * preprocessed, and the checks stay the cheap first step they are in check-data.js.
 *
 * Exit: 0 passed and preprocessed, the Python port agreeing; 1 rejected by the data checks (the
 * report says why); 3 the Python port differs (the parity report has examples); 2 usage; 70 internal.
 */

const { check } = require('./check-data');
const { preprocessFiles, OUTPUT_OPTIONS } = require('./preprocess');
const { startParity } = require('./parity-pipe');
const { readArgs, USAGE: CHECK_USAGE } = require('./checks/options');
const { runMain, UsageError, EXIT_OK } = require('./cli');

const USAGE = CHECK_USAGE.replace(
  'node check-data.js --report REPORT.json',
  'node gate.js --report REPORT.json --output OUT.jsonl [--summary SUMMARY.json] [--parity PARITY.json]',
);

async function main(argv) {
  const settings = readArgs(argv, OUTPUT_OPTIONS);
  if (settings.help) {
    process.stdout.write(`${USAGE}\n`);
    return EXIT_OK;
  }
  if (!settings.output) throw new UsageError('the --output option is required');
  // Python starts (and compiles its patterns) while the checks run; a rejected drop stops it unused.
  const checker = settings.parity ? startParity(settings.parity) : null;
  let checked;
  try {
    checked = await check(settings);
  } finally {
    if (checker && checked !== EXIT_OK) await checker.cancel();
  }
  if (checked !== EXIT_OK) return checked;
  return preprocessFiles(settings.inputs, settings, checker);
}

if (require.main === module) runMain(main, USAGE);

module.exports = { main, USAGE };

#!/usr/bin/env node
'use strict';
/**
 * CLI: streams sentiment CSV files into tokenized JSON lines for training, plus a summary; with
 * --parity, the Python port checks every row on the way (parity-pipe.js).
 */

const path = require('path');
const { cleanAndTokenize } = require('./textclean');
const { readBatches, checkInputFiles } = require('./csvstream');
const { textHash } = require('./checks/duplicates');
const { parseCli, runMain, writeOutput, writeJson, UsageError, EXIT_OK, EXIT_INTERNAL } = require('./cli');
const { startParity, teeToParity, PARITY_AGREES, PARITY_DIFFERS } = require('./parity-pipe');

const USAGE = 'usage: node preprocess.js --output OUT.jsonl [--summary SUMMARY.json] [--parity PARITY.json] INPUT.csv [INPUT2.csv ...]';
const OUTPUT_OPTIONS = { output: { type: 'string' }, summary: { type: 'string' }, parity: { type: 'string' } };
const OPTIONS = { ...OUTPUT_OPTIONS, help: { type: 'boolean', short: 'h' } };
/** The Python port differs from the Node cleaner on some rows (examples in the parity report). */
const EXIT_PARITY = 3;
/** Output is handed on in slices of about this many characters (a reader of a pipe gets them as they come). */
const YIELD_CHARS = 256 << 10;

/** Validates the command line into {output, summary, parity, inputs, help}. */
function readArgs(argv) {
  const { values, positionals } = parseCli(argv, OPTIONS);
  if (values.help) return { help: true };
  if (!values.output) throw new UsageError('the --output option is required');
  if (positionals.length === 0) throw new UsageError('no input CSV file given');
  return { output: values.output, summary: values.summary, parity: values.parity, inputs: positionals };
}

/**
 * Yields one JSON line per row with tokens, counting into stats as it goes.
 *
 * The training set is the union of the input files in the order given (the pipeline passes them
 * sorted by file name), each file in line order. De-duplication policy: the first row of each text
 * (compared after trimming) is kept; every later row with the same text is dropped, whatever its
 * label, so one text can never sit on both sides of the train/test split. Rows whose text is empty
 * after cleaning are dropped too. Both are counted in the summary.
 */
async function* jsonLines(inputs, stats) {
  const seen = new Set();
  for (const input of inputs) {
    for await (const rows of readBatches(input)) {
      let out = '';
      for (const row of rows) {
        stats.rows_in += 1;
        if (row.encoding === 'latin-1') stats.latin1_rows += 1;
        const key = textHash(row.text.trim());
        if (seen.has(key)) {
          stats.dropped_duplicates += 1;
          continue;
        }
        seen.add(key);
        const tokens = cleanAndTokenize(row.text);
        if (tokens.length === 0) {
          stats.dropped_empty += 1;
          continue;
        }
        stats.rows_out += 1;
        const { file, line, sentiment, text, encoding } = row;
        out += `${JSON.stringify({ file, line, sentiment, text, tokens: tokens.join(' '), encoding })}\n`;
        if (out.length >= YIELD_CHARS) {
          yield out;
          out = '';
        }
      }
      // One write per slice of rows, not per row.
      if (out.length > 0) yield out;
    }
  }
}

/**
 * Writes the training set of `inputs` to `output` (and the summary to `summary`, when given); with
 * `parity`, parity.py checks the rows as they are written and reports there (`checker`: one the
 * caller started already, parity-pipe.js). Returns the exit code: EXIT_OK, or EXIT_PARITY when the
 * Python port differs. Input problems throw (exitCode 1).
 */
async function preprocessFiles(inputs, { output, summary, parity }, checker = parity ? startParity(parity) : null) {
  await checkInputFiles(inputs);
  const started = process.hrtime.bigint();
  const stats = { rows_in: 0, rows_out: 0, dropped_duplicates: 0, dropped_empty: 0, latin1_rows: 0 };
  let parityCode = PARITY_AGREES;
  try {
    await writeOutput(output, checker ? teeToParity(jsonLines(inputs, stats), checker) : jsonLines(inputs, stats));
  } finally {
    if (checker) parityCode = await checker.finish();
  }
  const durationS = Number(process.hrtime.bigint() - started) / 1e9;
  const figures = { ...stats, files: inputs.map((p) => path.basename(p)), duration_s: Math.round(durationS * 1000) / 1000 };
  if (summary) await writeJson(summary, figures);
  process.stdout.write(`${JSON.stringify(figures)}\n`);
  if (parityCode === PARITY_AGREES) return EXIT_OK;
  if (parityCode === PARITY_DIFFERS) return EXIT_PARITY;
  throw Object.assign(new Error(`the parity check (parity.py) exited ${parityCode}: see its message above`), { exitCode: EXIT_INTERNAL });
}

/** Runs the CLI; input problems throw errors whose exitCode is 1, usage and IO problems 2; 3: parity differs. */
async function main(argv) {
  const args = readArgs(argv);
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return EXIT_OK;
  }
  return preprocessFiles(args.inputs, args);
}

if (require.main === module) runMain(main, USAGE);

module.exports = { main, jsonLines, preprocessFiles, OUTPUT_OPTIONS, EXIT_PARITY };

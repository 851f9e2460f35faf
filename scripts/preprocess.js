#!/usr/bin/env node
'use strict';
/** CLI: streams sentiment CSV files into tokenized JSON lines for training, plus a summary. */

const path = require('path');
const { cleanAndTokenize } = require('./textclean');
const { readBatches, checkInputFiles } = require('./csvstream');
const { textHash } = require('./checks/duplicates');
const { parseCli, runMain, writeOutput, writeJson, UsageError, EXIT_OK } = require('./cli');

const USAGE = 'usage: node preprocess.js --output OUT.jsonl [--summary SUMMARY.json] INPUT.csv [INPUT2.csv ...]';
const OPTIONS = { output: { type: 'string' }, summary: { type: 'string' }, help: { type: 'boolean', short: 'h' } };

/** Validates the command line into {output, summary, inputs, help}. */
function readArgs(argv) {
  const { values, positionals } = parseCli(argv, OPTIONS);
  if (values.help) return { help: true };
  if (!values.output) throw new UsageError('the --output option is required');
  if (positionals.length === 0) throw new UsageError('no input CSV file given');
  return { output: values.output, summary: values.summary, inputs: positionals };
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
      }
      // One write per batch of rows, not per row.
      if (out.length > 0) yield out;
    }
  }
}

/** Runs the CLI; input problems throw errors whose exitCode is 1, usage and IO problems 2. */
async function main(argv) {
  const args = readArgs(argv);
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return EXIT_OK;
  }
  await checkInputFiles(args.inputs);
  const started = process.hrtime.bigint();
  const stats = { rows_in: 0, rows_out: 0, dropped_duplicates: 0, dropped_empty: 0, latin1_rows: 0 };
  await writeOutput(args.output, jsonLines(args.inputs, stats));
  const durationS = Number(process.hrtime.bigint() - started) / 1e9;
  const summary = { ...stats, files: args.inputs.map((p) => path.basename(p)), duration_s: Math.round(durationS * 1000) / 1000 };
  if (args.summary) await writeJson(args.summary, summary);
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  return EXIT_OK;
}

if (require.main === module) runMain(main, USAGE);

module.exports = { main, jsonLines };

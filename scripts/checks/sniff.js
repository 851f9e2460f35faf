'use strict';
/** Looks at a file's first bytes before parsing: UTF-8 BOM (warning), UTF-16 and binary content (rejections). */

const fs = require('fs');
const { printable, REQUIRED_COLUMNS } = require('../csvstream');

const SNIFF_BYTES = 4096;
/** A text file may hold a stray NUL or control byte (rejected row by row); above 1 in 20 it is not text. */
const MAX_CONTROL_RATIO = 0.05;
const MIN_CONTROL_BYTES = 4;

/** Whether a byte is a C0 control other than tab, LF, CR (or DEL): never found in a text CSV. */
function isControl(byte) {
  return (byte < 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0d) || byte === 0x7f;
}

/**
 * Formats people save under a .csv name by mistake, by their first bytes: [magic, what it is, what to do].
 * Checked before anything else, so the reason names the format instead of "missing columns".
 */
const SIGNATURES = Object.freeze([
  [[0x50, 0x4b, 0x03, 0x04], 'a ZIP archive (an .xlsx or .ods spreadsheet, or a zipped CSV)', 'unzip it, or export the sheet as CSV'],
  [[0x50, 0x4b, 0x05, 0x06], 'an empty ZIP archive', 'export the data as CSV'],
  [[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1], 'an old Excel (.xls) or other OLE2 document', 'export the sheet as CSV'],
  [[0x1f, 0x8b], 'gzip-compressed', 'gunzip it first'],
  [[0x42, 0x5a, 0x68], 'bzip2-compressed', 'bunzip2 it first'],
  [[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], 'xz-compressed', 'unxz it first'],
  [[0x28, 0xb5, 0x2f, 0xfd], 'zstd-compressed', 'unzstd it first'],
  [[0x25, 0x50, 0x44, 0x46, 0x2d], 'a PDF document', 'export the table as CSV'],
  [[0x53, 0x51, 0x4c, 0x69, 0x74, 0x65, 0x20, 0x66], 'an SQLite database', 'export the table as CSV'],
  [[0x50, 0x41, 0x52, 0x31], 'a Parquet file', 'convert it to CSV'],
]);

function signature(head) {
  const found = SIGNATURES.find(([magic]) => head.length >= magic.length && magic.every((b, i) => head[i] === b));
  return found ? { what: found[1], advice: found[2] } : null;
}

/** Classifies a file's first bytes: {bom, utf16, format, controlBytes, sampled}. */
function classify(head) {
  const bom = head.length >= 3 && head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf;
  let utf16 = null;
  if (head.length >= 2 && head[0] === 0xff && head[1] === 0xfe) utf16 = 'UTF-16 little-endian (byte order mark FF FE)';
  if (head.length >= 2 && head[0] === 0xfe && head[1] === 0xff) utf16 = 'UTF-16 big-endian (byte order mark FE FF)';
  let controlBytes = 0;
  let evenNuls = 0;
  let oddNuls = 0;
  for (let i = 0; i < head.length; i += 1) {
    if (!isControl(head[i])) continue;
    controlBytes += 1;
    if (head[i] === 0 && i % 2 === 0) evenNuls += 1;
    if (head[i] === 0 && i % 2 === 1) oddNuls += 1;
  }
  // ASCII text in UTF-16 without a BOM: every other byte is NUL.
  if (utf16 === null && head.length >= 16) {
    if (oddNuls * 2 >= head.length * 0.9) utf16 = 'UTF-16 little-endian (no byte order mark)';
    else if (evenNuls * 2 >= head.length * 0.9) utf16 = 'UTF-16 big-endian (no byte order mark)';
  }
  return { bom, utf16, format: signature(head), controlBytes, sampled: head.length };
}

/**
 * Reads the first 4 KB of a file and returns {size, endsWithNewline, warnings, problems}: a UTF-8 BOM
 * is a warning (csvstream drops it), UTF-16 or binary content a `binary` problem (the file is not parsed).
 */
async function sniffFile(filePath, file) {
  const handle = await fs.promises.open(filePath, 'r');
  try {
    const { size } = await handle.stat();
    const head = Buffer.alloc(Math.min(SNIFF_BYTES, size));
    await handle.read(head, 0, head.length, 0);
    const last = Buffer.alloc(size > 0 ? 1 : 0);
    if (size > 0) await handle.read(last, 0, 1, size - 1);
    const endsWithNewline = size > 0 && (last[0] === 0x0a || last[0] === 0x0d);
    return { size, endsWithNewline, ...findings(file, classify(head)) };
  } finally {
    await handle.close();
  }
}

/** Turns a classification into warnings and problems for one file. */
function findings(file, { bom, utf16, format, controlBytes, sampled }) {
  if (format) {
    return { warnings: [], problems: [{ check: 'binary', file, format: format.what, message: `${file}: is ${format.what}, not a CSV text file: ${format.advice}` }] };
  }
  if (utf16 !== null) {
    return { warnings: [], problems: [{ check: 'binary', file, encoding: 'utf-16', message: `${file}: looks like ${utf16}; save it as UTF-8` }] };
  }
  if (controlBytes >= MIN_CONTROL_BYTES && controlBytes > sampled * MAX_CONTROL_RATIO) {
    return {
      warnings: [],
      problems: [{
        check: 'binary', file, control_bytes: controlBytes, sampled_bytes: sampled,
        message: `${file}: not a text file (${controlBytes} of its first ${sampled} bytes are NUL or control bytes); expected a UTF-8 CSV`,
      }],
    };
  }
  const warnings = bom ? [{ check: 'bom', file, message: `${file}: starts with a UTF-8 byte order mark (ignored; header names matched without it)` }] : [];
  return { warnings, problems: [] };
}

/** Delimiters a spreadsheet export may use instead of commas, with how a message names them. */
const OTHER_DELIMITERS = Object.freeze([[';', 'semicolons (;)'], ['\t', 'tabs'], ['|', 'pipes (|)']]);
const MAX_HINT_COLUMNS = 5;

/**
 * When a header row read with commas lacks a required column, the delimiter it seems to use instead:
 * the one that splits it into the most columns, preferring one that reveals every required column.
 * Returns {delimiter, name, columns} or null.
 */
function delimiterHint(found) {
  const header = found.join(',');
  let best = null;
  for (const [delimiter, name] of OTHER_DELIMITERS) {
    const columns = header.split(delimiter).map((c) => c.trim().replace(/^"(.*)"$/, '$1'));
    if (columns.length <= Math.max(found.length, 1)) continue;
    const complete = REQUIRED_COLUMNS.every((c) => columns.includes(c));
    const score = [complete ? 1 : 0, columns.length];
    if (best === null || score[0] > best.score[0] || (score[0] === best.score[0] && score[1] > best.score[1])) {
      best = { delimiter, name, columns, score };
    }
  }
  if (best === null) return null;
  return { delimiter: best.delimiter, name: best.name, columns: best.columns.slice(0, MAX_HINT_COLUMNS) };
}

/** The sentence added to a missing-column message when the header looks delimited by something else. */
function delimiterAdvice(hint) {
  const shown = hint.columns.map((c) => printable(c, 40)).join(', ');
  return `; the header looks delimited by ${hint.name} (${shown}), not commas: export the file as comma-separated CSV`;
}

module.exports = { sniffFile, classify, delimiterHint, delimiterAdvice, SNIFF_BYTES };

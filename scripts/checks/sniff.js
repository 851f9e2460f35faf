'use strict';
/** Looks at a file's first bytes before parsing: UTF-8 BOM (warning), UTF-16 and binary content (rejections). */

const fs = require('fs');

const SNIFF_BYTES = 4096;
/** A text file may hold a stray NUL or control byte (rejected row by row); above 1 in 20 it is not text. */
const MAX_CONTROL_RATIO = 0.05;
const MIN_CONTROL_BYTES = 4;

/** Whether a byte is a C0 control other than tab, LF, CR (or DEL): never found in a text CSV. */
function isControl(byte) {
  return (byte < 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0d) || byte === 0x7f;
}

/** Classifies a file's first bytes: {bom, utf16, controlBytes, sampled}. */
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
  return { bom, utf16, controlBytes, sampled: head.length };
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
function findings(file, { bom, utf16, controlBytes, sampled }) {
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

module.exports = { sniffFile, classify, SNIFF_BYTES };

'use strict';
/** Streams the rows of sentiment CSV files as decoded records with their source line numbers. */

const fs = require('fs');
const path = require('path');
const { Readable } = require('stream');
const { parse } = require('csv-parse');
const { decodeField } = require('./textclean');
const { FastCsv, DONE, STOP, MAX_RECORD_BYTES } = require('./csvfast');

const REQUIRED_COLUMNS = Object.freeze(['text', 'sentiment']);
/** Upper bound on one field, so an unclosed quote in a huge file cannot buffer the whole file. */
const MAX_FIELD_BYTES = 16 * 1024 * 1024;
const MAX_REASON_CHARS = 300;
const MAX_NAMES_SHOWN = 20;
const MAX_NAME_CHARS = 40;

/** A required column is absent from a file's header row (or the file has no header row at all). */
class MissingColumnError extends Error {
  constructor(file, missing, found) {
    super(missing.map((column) => missingColumnMessage(file, column, found)).join('; '));
    this.name = 'MissingColumnError';
    this.exitCode = 1;
    Object.assign(this, { file, missing, found });
  }
}

/** The CSV syntax of a file is broken; `line` is where the offending record starts. */
class CsvParseError extends Error {
  /** `code` is csv-parse's (CSV_QUOTE_NOT_CLOSED, ...); `bytes` how far the parser had read when it failed. */
  constructor(file, line, reason, code = null, bytes = null) {
    super(`${file}: CSV parse error in the record starting at line ${line}: ${reason}`);
    this.name = 'CsvParseError';
    this.exitCode = 1;
    Object.assign(this, { file, line, reason, code, bytes });
  }
}

/** An input file cannot be opened or read. */
class InputFileError extends Error {
  constructor(filePath, reason) {
    super(`cannot read input file ${filePath}: ${reason}`);
    this.name = 'InputFileError';
    this.exitCode = 2;
    Object.assign(this, { path: filePath, reason });
  }
}

/** Makes text from a file safe for a one-line message: control and separator characters escaped, length capped. */
function printable(text, maxChars) {
  const capped = text.length > maxChars ? `${text.slice(0, maxChars)}...` : text;
  return capped.replace(/[\p{C}\p{Zl}\p{Zp}]/gu, (c) => {
    const code = c.codePointAt(0);
    return code > 0xffff ? `\\u{${code.toString(16)}}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** Formats the one-sentence message for one missing column. */
function missingColumnMessage(file, column, found) {
  const names = found.slice(0, MAX_NAMES_SHOWN).map((name) => printable(name, MAX_NAME_CHARS));
  if (found.length > MAX_NAMES_SHOWN) names.push(`... (${found.length} in all)`);
  const context = found.length === 0 ? 'the file is empty, no header row' : `columns found: ${names.join(', ')}`;
  return `${file}: required column '${column}' is missing (${context})`;
}

/** Counts line breaks in a field's bytes; CRLF, a lone CR and a lone LF each count once. */
function countLineBreaks(buf) {
  if (buf.indexOf(0x0a) === -1 && buf.indexOf(0x0d) === -1) return 0;
  let count = 0;
  for (let i = 0; i < buf.length; i += 1) {
    if (buf[i] === 0x0a || (buf[i] === 0x0d && buf[i + 1] !== 0x0a)) count += 1;
  }
  return count;
}

/** Fails with InputFileError unless every path is a readable regular file. */
async function checkInputFiles(paths) {
  for (const filePath of paths) {
    let stat;
    try {
      await fs.promises.access(filePath, fs.constants.R_OK);
      stat = await fs.promises.stat(filePath);
    } catch (err) {
      throw new InputFileError(filePath, err.code === 'ENOENT' ? 'no such file' : err.message);
    }
    if (!stat.isFile()) throw new InputFileError(filePath, 'not a regular file');
  }
}

/** Decodes the header row's raw fields into trimmed column names (a leading UTF-8 BOM dropped). */
function headerNames(headerFields) {
  return headerFields.map((field) => decodeField(field).text.trim());
}

/** Maps the header row's column names to the index of each required column. */
function columnIndex(file, names, required) {
  const missing = required.filter((column) => !names.includes(column));
  if (missing.length > 0) throw new MissingColumnError(file, missing, names);
  return Object.fromEntries(required.map((column) => [column, names.indexOf(column)]));
}

/** Whether any field of a record holds a NUL byte. */
function hasNulByte(fields) {
  for (let i = 0; i < fields.length; i += 1) if (fields[i].indexOf(0) !== -1) return true;
  return false;
}

/**
 * Decodes the needed fields of one record; the row is latin-1 if any of them was not valid UTF-8.
 * `nul: true` is added only to a row with a NUL byte in any field (so ordinary rows keep their shape).
 */
function toRow(file, line, fields, index) {
  const sentiment = decodeField(fields[index.sentiment]);
  const text = decodeField(fields[index.text]);
  const latin1 = sentiment.encoding === 'latin-1' || text.encoding === 'latin-1';
  const row = { file, line, sentiment: sentiment.text.trim(), text: text.text, encoding: latin1 ? 'latin-1' : 'utf-8' };
  if (hasNulByte(fields)) row.nul = true;
  return row;
}

/** Turns a csv-parse error into a CsvParseError: line numbers dropped (csv-parse counts CRLF twice), Buffers decoded. */
function parseError(err, file, line, bytes) {
  const reason = err.message
    .replace(/ (?:at|on) line \d+/g, '')
    .replace(/\{"type":"Buffer","data":\[([\d,]*)\]\}/g, (_, bytes) => JSON.stringify(decodeField(Buffer.from(bytes ? bytes.split(',').map(Number) : [])).text));
  return new CsvParseError(file, line, printable(reason, MAX_REASON_CHARS), err.code || null, bytes);
}

/** Tracks the physical line where each record starts, from csv-parse's per-record info. */
function lineTracker(firstLine = 1) {
  let nextLine = firstLine;
  let emptyLinesSeen = 0;
  return {
    /** Returns the start line of the record just parsed and advances past it. */
    consume(fields, emptyLines) {
      const line = this.peek(emptyLines);
      emptyLinesSeen = emptyLines;
      let breaks = 0;
      for (let i = 0; i < fields.length; i += 1) breaks += countLineBreaks(fields[i]);
      nextLine = line + 1 + breaks;
      return line;
    },
    /** Returns where the next record starts, given the blank lines skipped so far. */
    peek(emptyLines) {
      return nextLine + emptyLines - emptyLinesSeen;
    },
  };
}

/** Bytes read from a file at a time. */
const CHUNK_BYTES = 1 << 20;
const EMPTY = Buffer.alloc(0);

/** The next chunk of a file's read stream, or null at its end; a read failure becomes InputFileError. */
async function nextChunk(chunks, filePath) {
  try {
    const { value, done } = await chunks.next();
    return done ? null : value;
  } catch (err) {
    throw new InputFileError(filePath, err.message);
  }
}

/**
 * The fast path: yields batches of rows while FastCsv can read the file. Returns null at the end of the
 * file, or where csv-parse takes over: {prefix: the header record's bytes, rest: the bytes read but not
 * consumed, offset: their position in the file, nextLine, index}.
 */
async function* fastBatches(file, filePath, required, hooks, chunks) {
  const csv = new FastCsv();
  let buf = EMPTY;
  let base = 0;
  let pos = 0;
  let atEof = false;
  let index = null;
  let prefix = EMPTY;
  let nextLine = 1;
  for (;;) {
    const rows = [];
    let nul = buf.indexOf(0, pos);
    let next;
    while ((next = csv.record(buf, pos, atEof)) >= 0) {
      const line = nextLine + csv.emptyLines;
      nextLine = line + 1 + csv.breaks;
      if (index === null) {
        const names = headerNames(Array.from({ length: csv.count }, (_, k) => csv.fieldBuffer(buf, k)));
        if (hooks.onHeader) hooks.onHeader(names);
        index = columnIndex(file, names, required);
        prefix = Buffer.from(buf.subarray(pos, next));
      } else {
        rows.push(csv.row(file, line, buf, index, nul !== -1 && nul < next));
        if (nul !== -1 && nul < next) nul = buf.indexOf(0, next);
      }
      pos = next;
    }
    if (rows.length > 0) yield rows;
    if (next === DONE) {
      if (index === null) throw new MissingColumnError(file, [...required], []);
      return null;
    }
    if (next === STOP || buf.length - pos > MAX_RECORD_BYTES) return { prefix, rest: buf.subarray(pos), offset: base + pos, nextLine, index };
    const chunk = await nextChunk(chunks, filePath);
    if (chunk === null) {
      atEof = true;
    } else {
      buf = pos < buf.length ? Buffer.concat([buf.subarray(pos), chunk]) : chunk;
      base += pos;
      pos = 0;
    }
  }
}

/** The bytes csv-parse reads when it takes over: the header record again, then the rest of the file. */
async function* remainingBytes(resume, chunks) {
  if (resume.prefix.length > 0) yield resume.prefix;
  if (resume.rest.length > 0) yield resume.rest;
  for (;;) {
    const { value, done } = await chunks.next();
    if (done) return;
    yield value;
  }
}

/**
 * The csv-parse path, from where the fast path stopped (the whole file when it stopped at the header):
 * yields the remaining rows, then throws the file's CsvParseError or MissingColumnError, if any.
 */
async function* parsedBatches(file, filePath, required, hooks, resume, chunks) {
  const lines = lineTracker(resume.nextLine);
  const source = Readable.from(remainingBytes(resume, chunks), { objectMode: false });
  let index = resume.index;
  let headerAgain = index !== null;
  let failure = null;
  // on_record and on_skip run inside the parser, in parse order, so line numbers stay exact however far
  // ahead it reads. A syntax error is "skipped" rather than thrown: an errored stream would discard the
  // rows still buffered in it. The parser is then ended, and the error thrown once those rows are out.
  const onRecord = (fields, info) => {
    if (headerAgain) {
      headerAgain = false;
      return null;
    }
    const line = lines.consume(fields, info.empty_lines);
    if (failure !== null) return null;
    if (index !== null) return toRow(file, line, fields, index);
    const names = headerNames(fields);
    if (hooks.onHeader) hooks.onHeader(names);
    index = columnIndex(file, names, required);
    return null;
  };
  const onSkip = (err) => {
    if (failure !== null) return;
    const bytes = parser.info.bytes - resume.prefix.length + resume.offset;
    failure = parseError(err, file, lines.peek(parser.info.empty_lines), bytes);
    process.nextTick(() => {
      source.unpipe(parser);
      source.destroy();
      if (!parser.writableEnded) parser.end();
    });
  };
  // encoding null: fields arrive as raw Buffers, decoded per field by decodeField. The default
  // bom: false matters too: csv-parse's BOM detection would switch its output to strings.
  const parser = parse({
    encoding: null,
    skip_empty_lines: true,
    max_record_size: MAX_FIELD_BYTES,
    skip_records_with_error: true,
    on_skip: onSkip,
    on_record: onRecord,
  });
  source.on('error', (err) => parser.destroy(new InputFileError(filePath, err.message)));
  source.pipe(parser);
  try {
    for await (const row of parser) yield [row];
  } finally {
    source.destroy();
  }
  if (failure !== null) throw failure;
  if (index === null) throw new MissingColumnError(file, [...required], []);
}

/**
 * Yields arrays of {file, line, sentiment, text, encoding} for the data rows of one CSV file, in file
 * order and constant memory (see readRecords). `options.fast: false` reads every record with csv-parse.
 */
async function* readBatches(filePath, required = REQUIRED_COLUMNS, hooks = {}, options = {}) {
  const file = path.basename(filePath);
  const source = fs.createReadStream(filePath, { highWaterMark: options.chunkBytes || CHUNK_BYTES });
  const chunks = source[Symbol.asyncIterator]();
  try {
    const start = { prefix: EMPTY, rest: EMPTY, offset: 0, nextLine: 1, index: null };
    const resume = options.fast === false ? start : yield* fastBatches(file, filePath, required, hooks, chunks);
    if (resume !== null) yield* parsedBatches(file, filePath, required, hooks, resume, chunks);
  } finally {
    source.destroy();
  }
}

/**
 * Yields {file, line, sentiment, text, encoding} for each data row of one CSV file, in constant memory.
 * `line` is the 1-based physical line where the record starts (quoted newlines and blank lines counted).
 * Every row before a syntax error is yielded, then the CsvParseError is thrown.
 * `hooks.onHeader(names)`, if given, receives the header's column names before the first row.
 */
async function* readRecords(filePath, required = REQUIRED_COLUMNS, hooks = {}, options = {}) {
  for await (const rows of readBatches(filePath, required, hooks, options)) yield* rows;
}

module.exports = {
  readRecords,
  readBatches,
  checkInputFiles,
  countLineBreaks,
  missingColumnMessage,
  printable,
  MissingColumnError,
  CsvParseError,
  InputFileError,
  REQUIRED_COLUMNS,
};

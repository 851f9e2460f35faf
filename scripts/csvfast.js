'use strict';
/**
 * The fast path of csvstream.js: reads CSV records straight from the bytes while they have the common
 * shape (comma-separated, fields optionally "-quoted with "" escapes, LF or CRLF record ends, every
 * record as wide as the header; a CR or LF that is not the record end is data, as for csv-parse), and stops at the first record it cannot vouch for. Every record it
 * accepts is one csv-parse (the options csvstream.js uses) reads the same way: same fields, same line
 * breaks, same blank lines skipped. Anything else (a stray quote, a lone CR, a record of another width,
 * an unclosed quote, a record over 1 MB) is left to csv-parse, from that record on.
 */

const { decodeField } = require('./textclean');

const COMMA = 0x2c;
const QUOTE = 0x22;
const LF = 0x0a;
const CR = 0x0d;
/** Return values of FastCsv.record besides a position: read more bytes, hand over to csv-parse, end of file. */
const NEED_MORE = -1;
const STOP = -2;
const DONE = -3;
/** Record delimiters, as csv-parse discovers them on the first line break outside quotes. */
const RD_UNKNOWN = 0;
const RD_LF = 1;
const RD_CRLF = 2;
/** Field flags. */
const ESCAPED = 1;
const NON_ASCII = 2;
const MAX_FIELDS = 256;
/** A record longer than this goes to csv-parse (which enforces csvstream's 16 MB limit). */
const MAX_RECORD_BYTES = 1 << 20;

/** One file's record reader; after each accepted record, its fields are starts/ends/flags[0..count). */
class FastCsv {
  constructor() {
    this.rd = RD_UNKNOWN;
    this.width = -1;
    this.count = 0;
    this.breaks = 0;
    this.emptyLines = 0;
    this.starts = new Int32Array(MAX_FIELDS);
    this.ends = new Int32Array(MAX_FIELDS);
    this.flags = new Uint8Array(MAX_FIELDS);
  }

  /**
   * Reads the record at `pos` of buf (`atEof`: buf ends where the file ends), after the blank lines
   * before it; returns the position after its line end, or NEED_MORE, STOP or DONE. `breaks` is the
   * line breaks inside its fields (CRLF, lone CR, lone LF once each), `emptyLines` the blank lines skipped.
   */
  record(buf, pos, atEof) {
    const len = buf.length;
    let p = this.skipEmptyLines(buf, pos, atEof);
    if (p < 0) return p;
    let n = 0;
    let breaks = 0;
    for (;;) {
      if (n === MAX_FIELDS || p - pos > MAX_RECORD_BYTES) return STOP;
      let i;
      let c;
      let flag = 0;
      let hi = 0;
      if (p < len && buf[p] === QUOTE) {
        i = p + 1;
        this.starts[n] = i;
        for (;;) {
          if (i >= len) return atEof ? STOP : NEED_MORE;
          c = buf[i];
          if (c === QUOTE) {
            if (i + 1 >= len) {
              if (!atEof) return NEED_MORE;
              break;
            }
            if (buf[i + 1] !== QUOTE) break;
            flag = ESCAPED;
            i += 2;
          } else {
            hi |= c;
            if (c === LF || (c === CR && buf[i + 1] !== LF)) breaks += 1;
            i += 1;
          }
        }
        this.ends[n] = i;
        i += 1;
        c = i < len ? buf[i] : -1;
        if (c !== COMMA && c !== LF && c !== CR && c !== -1) return STOP;
      } else {
        this.starts[n] = p;
        for (i = p; i < len; i += 1) {
          c = buf[i];
          if (c === COMMA || c === QUOTE) break;
          if (c === LF || c === CR) {
            // A line break that is not the record delimiter is data, as in csv-parse (counted as a line).
            const data = this.rd === RD_LF ? c === CR : this.rd === RD_CRLF && (c === LF || (i + 1 < len && buf[i + 1] !== LF));
            if (!data) {
              if (c === CR && this.rd === RD_CRLF && i + 1 >= len) {
                if (!atEof) return NEED_MORE;
              } else {
                break;
              }
            }
            breaks += 1;
          } else {
            hi |= c;
          }
        }
        if (i >= len) {
          if (!atEof) return NEED_MORE;
          c = -1;
        } else if (c === QUOTE) {
          return STOP; // a quote inside an unquoted field: csv-parse's INVALID_OPENING_QUOTE
        }
        this.ends[n] = i;
      }
      this.flags[n] = flag | (hi & 0x80 ? NON_ASCII : 0);
      n += 1;
      if (c === COMMA) {
        p = i + 1;
        continue;
      }
      const next = this.lineEnd(buf, i, c, atEof);
      if (next < 0) return next;
      if (next - pos > MAX_RECORD_BYTES) return STOP;
      if (this.width === -1) this.width = n;
      else if (n !== this.width) return STOP;
      this.count = n;
      this.breaks = breaks;
      return next;
    }
  }

  /** Skips the blank lines csv-parse skips (none before the header); returns where the record starts, or a code. */
  skipEmptyLines(buf, pos, atEof) {
    const len = buf.length;
    let p = pos;
    let empty = 0;
    for (;;) {
      if (p >= len) return atEof ? DONE : NEED_MORE;
      const c = buf[p];
      if (c !== LF && c !== CR) break;
      if (this.rd === RD_UNKNOWN) return STOP;
      if (this.rd === RD_LF) {
        if (c !== LF) return STOP;
        p += 1;
      } else {
        if (c !== CR) return STOP;
        if (p + 1 >= len) return atEof ? STOP : NEED_MORE;
        if (buf[p + 1] !== LF) return STOP;
        p += 2;
      }
      empty += 1;
    }
    this.emptyLines = empty;
    return p;
  }

  /** The position after the line end at i (c = buf[i], -1 at the end of the file), or a code. */
  lineEnd(buf, i, c, atEof) {
    if (c === -1) return i;
    if (c === LF) {
      if (this.rd === RD_UNKNOWN) this.rd = RD_LF;
      return this.rd === RD_LF ? i + 1 : STOP;
    }
    if (i + 1 >= buf.length) return atEof ? STOP : NEED_MORE;
    if (buf[i + 1] !== LF) return STOP; // a lone CR: csv-parse's old-Mac record delimiter, or data
    if (this.rd === RD_UNKNOWN) this.rd = RD_CRLF;
    return this.rd === RD_CRLF ? i + 2 : STOP;
  }

  /** Field k of the last record decoded as csvstream's decodeField would: {text, encoding}. */
  field(buf, k) {
    // ASCII is the same string in UTF-8 and latin-1, so it needs no UTF-8 check.
    if (this.flags[k] === 0) return { text: buf.latin1Slice(this.starts[k], this.ends[k]), encoding: 'utf-8' };
    return decodeField((this.flags[k] & ESCAPED) === 0 ? buf.subarray(this.starts[k], this.ends[k]) : this.fieldBuffer(buf, k));
  }

  /** csvstream's row for the last record; `nul` says whether its bytes hold a NUL. */
  row(file, line, buf, index, nul) {
    const sentiment = this.field(buf, index.sentiment);
    const text = this.field(buf, index.text);
    const latin1 = sentiment.encoding === 'latin-1' || text.encoding === 'latin-1';
    const row = { file, line, sentiment: sentiment.text.trim(), text: text.text, encoding: latin1 ? 'latin-1' : 'utf-8' };
    if (nul) row.nul = true;
    return row;
  }

  /** Field k of the last record as its own Buffer, "" escapes undone (what csv-parse would hand over). */
  fieldBuffer(buf, k) {
    const start = this.starts[k];
    const end = this.ends[k];
    if ((this.flags[k] & ESCAPED) === 0) return Buffer.from(buf.subarray(start, end));
    const out = Buffer.allocUnsafe(end - start);
    let n = 0;
    for (let i = start; i < end; i += 1) {
      out[n] = buf[i];
      n += 1;
      if (buf[i] === QUOTE) i += 1;
    }
    return out.subarray(0, n);
  }
}

module.exports = { FastCsv, NEED_MORE, STOP, DONE, MAX_RECORD_BYTES };

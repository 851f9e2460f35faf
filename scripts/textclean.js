'use strict';
/** Text cleaning and field decoding shared by preprocess.js and check-data.js (a Python port must agree char for char). */

// The original contract: lowercase, strip non-alphanumerics, drop stop words, split.
// "Alphanumeric" means Unicode letters and numbers (general category L* or N*), whitespace means
// what JavaScript's \s matches. Both come from charclass.json, frozen at one Unicode version
// (tools/gen-charclass.py), so this and the Python port agree whichever Node or Python runs them.
const CHARCLASS = require('./charclass.json');
const STOP_WORDS = new Set(['a', 'an', 'the', 'is', 'in', 'on', 'at']);
const LONGEST_STOP_WORD = Math.max(...[...STOP_WORDS].map((w) => w.length));

/** Regex character-class body for [[first, last], ...] code point ranges. */
function classBody(ranges) {
  return ranges.map(([a, b]) => `\\u{${a.toString(16)}}-\\u{${b.toString(16)}}`).join('');
}
const WS = classBody(CHARCLASS.whitespace);
const NOT_KEPT = new RegExp(`[^${classBody(CHARCLASS.letters_numbers)}${WS}]`, 'gu');
const WHITESPACE = new RegExp(`[${WS}]+`, 'u');

/** Lowercases, strips everything but letters, numbers and whitespace, splits and drops stop words. */
function cleanAndTokenize(text) {
  if (typeof text !== 'string') throw new TypeError('cleanAndTokenize expects a string');
  return asciiTokens(text) || unicodeTokens(text);
}

/** cleanAndTokenize by the regular expressions: any text. */
function unicodeTokens(text) {
  // Stripping before lowercasing too keeps code points newer than charclass.json from reaching
  // toLowerCase, whose mappings for them depend on the runtime's Unicode version.
  const lowered = text.replace(NOT_KEPT, '').toLowerCase();
  return lowered.replace(NOT_KEPT, '').split(WHITESPACE).filter((t) => t.length > 0 && !STOP_WORDS.has(t));
}

// The same classes over ASCII, from charclass.json: on ASCII text, stripping keeps [0-9A-Za-z] and
// whitespace, and toLowerCase maps A-Z alone, so one pass over the characters gives the same tokens.
const DROPPED = 0;
const SPACE = 1;
const LOWER = 2;
const OTHER_KEPT = 3;
const ASCII_CLASS = new Uint8Array(128).map((_, c) => {
  const within = (ranges) => ranges.some(([a, b]) => a <= c && c <= b);
  if (within(CHARCLASS.whitespace)) return SPACE;
  if (!within(CHARCLASS.letters_numbers)) return DROPPED;
  return String.fromCharCode(c).toLowerCase() === String.fromCharCode(c) ? LOWER : OTHER_KEPT;
});
const ASCII_DROPPED = new RegExp(`[${[...ASCII_CLASS].map((k, c) => (k === DROPPED ? `\\x${c.toString(16).padStart(2, '0')}` : '')).join('')}]`, 'g');

/** Whether cleanAndTokenize(text) has any token; an ASCII text is decided by its first real word. */
function hasTokens(text) {
  let kept = 0;
  let start = -1;
  for (let i = 0; i <= text.length; i += 1) {
    const c = i < text.length ? text.charCodeAt(i) : 0x20;
    if (c > 0x7f) return unicodeTokens(text).length > 0;
    const kind = ASCII_CLASS[c];
    if (kind !== SPACE) {
      if (start < 0) start = i;
      if (kind !== DROPPED) kept += 1;
    } else if (start >= 0) {
      // A word longer than every stop word is a token whatever it is.
      if (kept > LONGEST_STOP_WORD || (kept > 0 && !STOP_WORDS.has(text.slice(start, i).replace(ASCII_DROPPED, '').toLowerCase()))) return true;
      start = -1;
      kept = 0;
    }
  }
  return false;
}

/** cleanAndTokenize of an ASCII text, or null when the text holds anything beyond ASCII. */
function asciiTokens(text) {
  const tokens = [];
  let start = -1;
  let plain = true; // the word so far is all lowercase letters and digits
  for (let i = 0; i <= text.length; i += 1) {
    const c = i < text.length ? text.charCodeAt(i) : 0x20;
    if (c > 0x7f) return null;
    const kind = ASCII_CLASS[c];
    if (kind !== SPACE) {
      if (start < 0) {
        start = i;
        plain = true;
      }
      if (kind !== LOWER) plain = false;
    } else if (start >= 0) {
      const word = plain ? text.slice(start, i) : text.slice(start, i).replace(ASCII_DROPPED, '').toLowerCase();
      if (word.length > 0 && !STOP_WORDS.has(word)) tokens.push(word);
      start = -1;
    }
  }
  return tokens;
}

// fatal: invalid UTF-8 throws instead of yielding U+FFFD; ignoreBOM false (the default) drops a leading BOM.
const UTF8 = new TextDecoder('utf-8', { fatal: true });
const { isUtf8 } = require('buffer');

/** Decodes one field's bytes: UTF-8 when valid (leading BOM removed), else latin-1; returns {text, encoding}. */
function decodeField(buffer) {
  // isUtf8 (Node >= 18.14) spares the exception of a failed decode, the bulk of a latin-1 field's cost;
  // it applies the same well-formedness rules as the decoder (checked in __tests__/textclean.test.js).
  if (isUtf8 !== undefined && !isUtf8(buffer)) return { text: buffer.toString('latin1'), encoding: 'latin-1' };
  try {
    return { text: UTF8.decode(buffer), encoding: 'utf-8' };
  } catch (err) {
    // Checked by code, not instanceof TypeError: Node's error comes from another realm under Jest.
    if (err.code !== 'ERR_ENCODING_INVALID_ENCODED_DATA') throw err;
    return { text: buffer.toString('latin1'), encoding: 'latin-1' };
  }
}

module.exports = { cleanAndTokenize, hasTokens, unicodeTokens, asciiTokens, decodeField, STOP_WORDS };

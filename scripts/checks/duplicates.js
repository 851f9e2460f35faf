'use strict';
/**
 * Duplicate and conflicting-label detection across all input files: the one part of the gate whose
 * memory grows with the data.
 *
 * Memory: one hash-table slot per distinct trimmed text, keyed by a 53-bit hash (no string kept), its
 * value one double packing the row count and the set of labels seen: 16 bytes a slot, at most half the
 * slots used, so 32 to 64 bytes per distinct text (16 MB for 380,000 distinct texts; 3x that for a
 * moment while the table doubles). A Map would take about 100 bytes per text. Two different texts
 * collide with probability ~n^2 / 2^54 (about 1e-5 at 380,000 texts): a collision could only
 * overstate the duplicate count by one.
 */

const NEW_TEXT = 0;
const REPEAT = 1;
const REPEAT_NEW_LABEL = 2;

/** A 53-bit hash of a string's UTF-16 code units: two 32-bit FNV-1a/murmur-style lanes, finalised. */
function textHash(text) {
  let h1 = 0x811c9dc5;
  let h2 = 0x9747b28c ^ text.length;
  for (let i = 0; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995);
    h2 ^= h2 >>> 15;
  }
  h1 ^= h1 >>> 16;
  h1 = Math.imul(h1, 0x85ebca6b);
  h1 ^= h1 >>> 13;
  h1 = Math.imul(h1, 0xc2b2ae35);
  h1 ^= h1 >>> 16;
  h2 = Math.imul(h2 ^ (h2 >>> 13), 0x27d4eb2d);
  h2 ^= h2 >>> 16;
  return (h1 >>> 0) * 0x200000 + ((h2 >>> 0) >>> 11);
}

/** Number of set bits in a mask below 2^31. */
function bitCount(mask) {
  let n = 0;
  for (let m = mask; m !== 0; m &= m - 1) n += 1;
  return n;
}

const INITIAL_SLOTS = 1 << 16;
/** The table doubles when more than half its slots are used (linear probing stays short). */
const MAX_LOAD = 0.5;

/**
 * Counts texts by hash with the labels seen for each: an open-addressing hash table over two
 * Float64Arrays (key = hash, value = count * span + label mask), 0 marking a free slot. `labelBits` is
 * how many label bits a mask uses (allowed labels, plus one shared by every unknown label).
 */
class DuplicateIndex {
  constructor(labelBits, slots = INITIAL_SLOTS) {
    this.span = 2 ** labelBits;
    this.size = 0;
    this.allocate(slots);
  }

  /** Replaces the table with an empty one of `slots` slots (a power of two). */
  allocate(slots) {
    this.keys = new Float64Array(slots);
    this.values = new Float64Array(slots);
    this.slotMask = slots - 1;
  }

  /** The slot holding `key`, or the free slot where it belongs. */
  slotOf(key) {
    // The high 32 bits of the hash (a mixed 32-bit lane) pick the start slot.
    let slot = Math.floor(key / 0x200000) & this.slotMask;
    while (this.keys[slot] !== 0 && this.keys[slot] !== key) slot = (slot + 1) & this.slotMask;
    return slot;
  }

  /** Doubles the table, re-inserting every entry. */
  grow() {
    const { keys, values } = this;
    this.allocate(keys.length * 2);
    for (let i = 0; i < keys.length; i += 1) {
      if (keys[i] === 0) continue;
      const slot = this.slotOf(keys[i]);
      this.keys[slot] = keys[i];
      this.values[slot] = values[i];
    }
  }

  /** Records one row's text hash and label bit; returns NEW_TEXT, REPEAT or REPEAT_NEW_LABEL. */
  add(hash, bit) {
    const key = hash === 0 ? 1 : hash;
    const slot = this.slotOf(key);
    const value = this.values[slot];
    if (this.keys[slot] === 0) {
      this.keys[slot] = key;
      this.values[slot] = this.span + bit;
      this.size += 1;
      if (this.size > this.keys.length * MAX_LOAD) this.grow();
      return NEW_TEXT;
    }
    const mask = value % this.span;
    this.values[slot] = value + this.span + ((mask | bit) - mask);
    return (mask & bit) === 0 ? REPEAT_NEW_LABEL : REPEAT;
  }

  /**
   * Totals over the index: duplicate_texts (distinct texts seen more than once), duplicate_rows (rows
   * repeating a text seen before: rows minus distinct texts), conflicting_texts (texts seen with more
   * than one label) and conflicting_rows (all rows of those texts).
   */
  totals() {
    const totals = { distinct_texts: this.size, duplicate_texts: 0, duplicate_rows: 0, conflicting_texts: 0, conflicting_rows: 0 };
    for (let i = 0; i < this.keys.length; i += 1) {
      if (this.keys[i] === 0) continue;
      const count = Math.floor(this.values[i] / this.span);
      if (count < 2) continue;
      totals.duplicate_texts += 1;
      totals.duplicate_rows += count - 1;
      if (bitCount(this.values[i] % this.span) > 1) {
        totals.conflicting_texts += 1;
        totals.conflicting_rows += count;
      }
    }
    return totals;
  }
}

module.exports = { DuplicateIndex, textHash, bitCount, NEW_TEXT, REPEAT, REPEAT_NEW_LABEL };

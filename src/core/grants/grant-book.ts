/**
 * What we granted and until when, for the audit log, ON_CLOSE and metrics: the kernel set is the
 * truth and expires grants by itself. Pure, clock-injected. A restarted daemon refills it from the
 * kernel's own listing (adopt), so grants from before the restart close with their log line too.
 */
import type { Door } from "../types.js";
import type { Family } from "../types.js";

export interface GrantRecord {
  door: Door;
  src: string;
  family: Family;
  /** Infinity when OPEN_FOR is 0 (until the close sequence). */
  expiresAt: number;
}

export class GrantBook {
  private readonly grants = new Map<string, GrantRecord>();

  /** Records a new or refreshed grant and returns its expiry. */
  open(door: Door, src: string, family: Family, now: number): GrantRecord {
    return this.adopt(door, src, family, door.openForMs > 0 ? now + door.openForMs : Infinity);
  }

  /** Records a grant that expires at `expiresAt` (Infinity: until the close sequence). */
  adopt(door: Door, src: string, family: Family, expiresAt: number): GrantRecord {
    const record = { door, src, family, expiresAt };
    const key = `${door.name}|${src}`;
    this.grants.delete(key); // re-insert to keep rough expiry order for the sweep
    this.grants.set(key, record);
    return record;
  }

  has(door: Door, src: string): boolean {
    return this.grants.has(`${door.name}|${src}`);
  }

  get(door: Door, src: string): GrantRecord | undefined {
    return this.grants.get(`${door.name}|${src}`);
  }

  /** Removes a grant; returns it if we had one. */
  close(door: Door, src: string): GrantRecord | undefined {
    const key = `${door.name}|${src}`;
    const record = this.grants.get(key);
    this.grants.delete(key);
    return record;
  }

  /** Takes out and returns every grant whose time is up. */
  expire(now: number): GrantRecord[] {
    const expired: GrantRecord[] = [];
    for (const [key, record] of this.grants) {
      if (record.expiresAt <= now) {
        this.grants.delete(key);
        expired.push(record);
      }
    }
    return expired;
  }

  get size(): number {
    return this.grants.size;
  }
}

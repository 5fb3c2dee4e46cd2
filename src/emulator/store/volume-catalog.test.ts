import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VolumeRecord } from '../ec2/volumes.js';
import { Catalog } from './catalog.js';
import { VolumeCatalog } from './volume-catalog.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function volume(volumeId: string): VolumeRecord {
  return {
    volumeId,
    region: 'us-east-1',
    availabilityZone: 'us-east-1a',
    sizeGiB: 8,
    volumeType: 'gp3',
    iops: 3000,
    throughput: 125,
    encrypted: false,
    kmsKeyId: null,
    snapshotId: null,
    source: null,
    tags: [],
    createTime: 0,
    availableAt: 0,
    failure: null,
    fastRestored: false,
    attachment: null,
    deletedAt: null,
    goneAt: null,
  };
}

describe('VolumeCatalog', () => {
  it('stores a volume and the client token that made it together, or neither', () => {
    const dir = mkdtempSync(join(tmpdir(), 'snapline-volume-catalog-'));
    dirs.push(dir);
    const catalog = new Catalog(join(dir, 'catalog.db'));
    try {
      const volumes = new VolumeCatalog(catalog.database);
      volumes.putVolume(volume('vol-1'), { key: 'us-east-1\0token', token: { parameters: '{}', volumeId: 'vol-1' } });
      // The same token key again: its row cannot be written, and the volume is not written either.
      expect(() => volumes.putVolume(volume('vol-2'), { key: 'us-east-1\0token', token: { parameters: '{}', volumeId: 'vol-2' } })).toThrow();
      const stored = volumes.load();
      expect([...stored.volumes.keys()]).toEqual(['vol-1']);
      expect([...stored.clientTokens.values()]).toEqual([{ parameters: '{}', volumeId: 'vol-1' }]);
    } finally {
      catalog.close();
    }
  });
});

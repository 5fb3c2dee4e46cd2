import type Database from 'better-sqlite3';
import type { FastRestoreRecord, InstanceRecord, StoredVolumes, VolumeClientToken, VolumeRecord, VolumeStore } from '../ec2/volumes.js';

/** EC2 volumes, instances and FSR records in the endpoint's catalog database. Every write is one statement or one transaction. */
export class VolumeCatalog implements VolumeStore {
  readonly #s;
  readonly #dropVolume: (volumeId: string) => void;
  readonly #putVolume: (volume: VolumeRecord, madeFor?: { key: string; token: VolumeClientToken }) => void;

  constructor(db: Database.Database) {
    const upsert = (table: string, key: string) =>
      db.prepare<[string, string]>(`INSERT INTO ${table} (${key}, record) VALUES (?, ?) ON CONFLICT(${key}) DO UPDATE SET record = excluded.record`);
    this.#s = {
      putVolume: upsert('ec2_volumes', 'volume_id'),
      dropVolume: db.prepare<[string]>('DELETE FROM ec2_volumes WHERE volume_id = ?'),
      dropTokens: db.prepare<[string]>('DELETE FROM ec2_volume_tokens WHERE volume_id = ?'),
      putToken: db.prepare<[string, string, string]>('INSERT INTO ec2_volume_tokens (token_key, parameters, volume_id) VALUES (?, ?, ?)'),
      putInstance: upsert('ec2_instances', 'instance_id'),
      putFastRestore: upsert('ec2_fast_restores', 'snapshot_zone'),
      volumes: db.prepare<[], { volume_id: string; record: string }>('SELECT volume_id, record FROM ec2_volumes ORDER BY rowid'),
      tokens: db.prepare<[], { token_key: string; parameters: string; volume_id: string }>('SELECT * FROM ec2_volume_tokens ORDER BY rowid'),
      instances: db.prepare<[], { instance_id: string; record: string }>('SELECT instance_id, record FROM ec2_instances ORDER BY rowid'),
      fastRestores: db.prepare<[], { snapshot_zone: string; record: string }>('SELECT snapshot_zone, record FROM ec2_fast_restores ORDER BY rowid'),
    };
    this.#putVolume = db.transaction((volume: VolumeRecord, madeFor?: { key: string; token: VolumeClientToken }) => {
      this.#s.putVolume.run(volume.volumeId, JSON.stringify(volume));
      if (madeFor !== undefined) this.#s.putToken.run(madeFor.key, madeFor.token.parameters, madeFor.token.volumeId);
    });
    this.#dropVolume = db.transaction((volumeId: string) => {
      this.#s.dropVolume.run(volumeId);
      this.#s.dropTokens.run(volumeId);
    });
  }

  /** All records, in the order they were made. */
  load(): StoredVolumes {
    return {
      volumes: new Map(this.#s.volumes.all().map((r) => [r.volume_id, JSON.parse(r.record) as VolumeRecord])),
      clientTokens: new Map(this.#s.tokens.all().map((r) => [r.token_key, { parameters: r.parameters, volumeId: r.volume_id }])),
      instances: new Map(this.#s.instances.all().map((r) => [r.instance_id, JSON.parse(r.record) as InstanceRecord])),
      fastRestores: new Map(this.#s.fastRestores.all().map((r) => [r.snapshot_zone, JSON.parse(r.record) as FastRestoreRecord])),
    };
  }

  /** The volume, and the client token that made it when given, in one transaction. */
  putVolume(volume: VolumeRecord, madeFor?: { key: string; token: VolumeClientToken }): void {
    this.#putVolume(volume, madeFor);
  }

  /** Drops the volume and the client tokens that answer it, in one transaction. */
  dropVolume(volumeId: string): void {
    this.#dropVolume(volumeId);
  }

  putInstance(instance: InstanceRecord): void {
    this.#s.putInstance.run(instance.instanceId, JSON.stringify(instance));
  }

  putFastRestore(key: string, record: FastRestoreRecord): void {
    this.#s.putFastRestore.run(key, JSON.stringify(record));
  }
}

import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../errors.js';
import { isNbdUrl, nbdVolumeName, parseNbdUrl } from './url.js';

describe('parseNbdUrl', () => {
  it('reads TCP URLs: host, port (10809 by default), percent-decoded export name', () => {
    expect(parseNbdUrl('nbd://example.com/disk')).toEqual({
      url: 'nbd://example.com:10809/disk',
      exportName: 'disk',
      transport: { kind: 'tcp', host: 'example.com', port: 10809 },
      tls: undefined,
    });
    expect(parseNbdUrl('nbd://10.0.0.5:10900/vm%20disk')).toMatchObject({ exportName: 'vm disk', transport: { port: 10900 }, url: 'nbd://10.0.0.5:10900/vm%20disk' });
    expect(parseNbdUrl('nbd://[::1]:5000//abs')).toMatchObject({ exportName: '/abs', transport: { host: '::1', port: 5000 }, url: 'nbd://[::1]:5000//abs' });
    expect(parseNbdUrl('nbd://host')).toMatchObject({ exportName: '', url: 'nbd://host:10809/' });
  });

  it('reads Unix socket URLs, taking a relative socket path from the working folder', () => {
    expect(parseNbdUrl('nbd+unix:///disk?socket=/run/nbd.sock')).toEqual({
      url: 'nbd+unix:///disk?socket=/run/nbd.sock',
      exportName: 'disk',
      transport: { kind: 'unix', socket: '/run/nbd.sock' },
      tls: undefined,
    });
    expect(parseNbdUrl('nbd+unix:///?socket=s+1.sock', '/srv')).toMatchObject({ exportName: '', transport: { socket: '/srv/s+1.sock' } });
  });

  it('reads the TLS schemes and their settings; the canonical URL leaves the settings out', () => {
    expect(parseNbdUrl('nbds://h/d?tls-certificates=/etc/pki/nbd&tls-hostname=nbd.example&tls-verify-peer=0')).toMatchObject({
      url: 'nbds://h:10809/d',
      tls: { certificates: '/etc/pki/nbd', hostname: 'nbd.example', verifyPeer: false },
    });
    expect(parseNbdUrl('nbds+unix:///d?socket=/s')).toMatchObject({ tls: { certificates: undefined, hostname: undefined, verifyPeer: true } });
  });

  it.each([
    ['nbd+vsock:///', /scheme nbd\+vsock/],
    ['nbd:///disk', /the host is missing/],
    ['nbd://h:70000/d', /port 70000/],
    ['nbd://user@h/d', /user names/],
    ['nbd+unix:///d', /socket=PATH query parameter is missing/],
    ['nbd+unix://host/d?socket=/s', /has no host/],
    ['nbd://h/d?socket=/s', /unknown query parameter socket/],
    ['nbd://h/d?tls-certificates=/x', /TLS setting, but nbd:\/\/ does not use TLS/],
    ['nbds://h/d?tls-verify-peer=yes', /tls-verify-peer must be 0 or 1/],
    ['nbds://h/d?tls-hostname=a&tls-hostname=b', /tls-hostname is given twice/],
    ['nbd://h/%zz', /not valid percent-encoding/],
    ['nbd://h/d#frag', /fragment/],
  ])('refuses %s, naming what is wrong', (url, message) => {
    expect(() => parseNbdUrl(url)).toThrow(message);
    expect(() => parseNbdUrl(url)).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }));
  });
});

describe('isNbdUrl', () => {
  it('tells NBD URLs from paths', () => {
    expect(['nbd://h/d', 'NBDS://h/d', 'nbd+unix:///d?socket=/s', 'nbd+vsock:///'].map(isNbdUrl)).toEqual([true, true, true, true]);
    expect(['/dev/sdb', 'disk.img', 'nbd.img', 'http://h/d', 'nbd:/x'].map(isNbdUrl)).toEqual([false, false, false, false, false]);
  });
});

describe('nbdVolumeName', () => {
  it('is the export name made a valid volume name, and there is none for the default export', () => {
    expect(nbdVolumeName(parseNbdUrl('nbd://h/vm disk/1'))).toBe('vm_disk_1');
    expect(() => nbdVolumeName(parseNbdUrl('nbd+unix:///?socket=/s'))).toThrow(/names no export.*pass --volume/);
  });
});

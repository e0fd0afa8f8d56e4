import {
  cgroupCpuLimit,
  parseCfs,
  parseCpuMax,
  readCgroupCpuFiles,
  usableCores,
} from '../../../services/common/cpu-limit';

describe('cgroup v2 cpu.max', () => {
  test.each([
    ['max 100000\n', undefined],
    ['200000 100000\n', 2],
    ['150000 100000', 1.5],
    ['50000 100000\n', 0.5],
    ['  300000   100000  \n', 3],
    ['', undefined],
    ['max', undefined],
    ['100000', undefined],
    ['0 100000', undefined],
    ['-1 100000', undefined],
    ['100000 0', undefined],
    ['abc 100000', undefined],
    ['1.5 1', undefined],
    ['100000 100000 7', undefined],
  ])('%j is %p cores', (text, want) => {
    expect(parseCpuMax(text)).toBe(want);
  });
});

describe('cgroup v1 CFS quota', () => {
  test.each([
    ['-1\n', '100000\n', undefined],
    ['200000\n', '100000\n', 2],
    ['25000', '100000', 0.25],
    ['', '100000', undefined],
    ['100000', '', undefined],
    ['100000', '0', undefined],
    ['lots', '100000', undefined],
  ])('quota %j period %j is %p cores', (quota, period, want) => {
    expect(parseCfs(quota, period)).toBe(want);
  });
});

describe('the cgroup limit', () => {
  test('none when no file could be read', () => {
    expect(cgroupCpuLimit({})).toBeUndefined();
  });
  test('the strictest of the v2 files along the path', () => {
    expect(cgroupCpuLimit({ cpuMax: ['max 100000', '400000 100000', '150000 100000'] })).toBe(1.5);
  });
  test('v2 "max" everywhere is no limit', () => {
    expect(cgroupCpuLimit({ cpuMax: ['max 100000\n', 'max 100000\n'] })).toBeUndefined();
  });
  test('v1 alone', () => {
    expect(cgroupCpuLimit({ cfsQuotaUs: '300000\n', cfsPeriodUs: '100000\n' })).toBe(3);
    expect(cgroupCpuLimit({ cfsQuotaUs: '-1\n', cfsPeriodUs: '100000\n' })).toBeUndefined();
  });
  test('a quota without its period is ignored', () => {
    expect(cgroupCpuLimit({ cfsQuotaUs: '300000' })).toBeUndefined();
  });
  test('odd v2 values are ignored, a good v1 value still counts', () => {
    expect(
      cgroupCpuLimit({ cpuMax: ['garbage'], cfsQuotaUs: '50000', cfsPeriodUs: '100000' }),
    ).toBe(0.5);
  });
});

describe('usable cores', () => {
  test('no limit: the affinity', () => {
    expect(usableCores(8, undefined)).toEqual({
      cores: 8,
      reason: '8 CPUs available, no cgroup CPU limit',
    });
  });
  test('a fractional limit is rounded up', () => {
    expect(usableCores(8, 1.5).cores).toBe(2);
    expect(usableCores(8, 1.5).reason).toBe(
      'cgroup CPU limit 1.5 (rounded up to 2) of 8 CPUs available',
    );
    expect(usableCores(8, 2.0001).cores).toBe(3);
  });
  test('a whole limit is not rounded past itself', () => {
    expect(usableCores(8, 2).cores).toBe(2);
  });
  test('less than one core is one', () => {
    expect(usableCores(8, 0.25).cores).toBe(1);
  });
  test('a limit above the affinity leaves the affinity', () => {
    expect(usableCores(2, 4)).toEqual({
      cores: 2,
      reason: '2 CPUs available, cgroup CPU limit 4',
    });
  });
  test('nonsense in is at least one core out', () => {
    expect(usableCores(0, undefined).cores).toBe(1);
    expect(usableCores(NaN, undefined).cores).toBe(1);
    expect(usableCores(4, 0).cores).toBe(4);
    expect(usableCores(4, Infinity).cores).toBe(4);
  });
});

describe('reading the files', () => {
  const reader = (files: Record<string, string>) => (path: string) => files[path];

  test('v2 in a container (cgroup namespace): the mount root', () => {
    const read = reader({
      '/proc/self/cgroup': '0::/\n',
      '/sys/fs/cgroup/cpu.max': '150000 100000\n',
    });
    expect(readCgroupCpuFiles(read)).toEqual({ cpuMax: ['150000 100000\n'] });
  });
  test('v2 on a host: this cgroup and its ancestors', () => {
    const read = reader({
      '/proc/self/cgroup': '0::/system.slice/mayfly.service\n',
      '/sys/fs/cgroup/system.slice/mayfly.service/cpu.max': 'max 100000\n',
      '/sys/fs/cgroup/system.slice/cpu.max': '300000 100000\n',
    });
    const files = readCgroupCpuFiles(read);
    expect(files.cpuMax).toEqual(['max 100000\n', '300000 100000\n']);
    expect(cgroupCpuLimit(files)).toBe(3);
  });
  test('v1: the cpu controller named in /proc/self/cgroup', () => {
    const read = reader({
      '/proc/self/cgroup': '4:memory:/x\n3:cpu,cpuacct:/docker/abc\n1:cpuset:/\n',
      '/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us': '50000\n',
      '/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us': '100000\n',
    });
    expect(cgroupCpuLimit(readCgroupCpuFiles(read))).toBe(0.5);
  });
  test('v1 in a container: the path is not visible, the mount is its own cgroup', () => {
    const read = reader({
      '/proc/self/cgroup': '3:cpu,cpuacct:/docker/abc\n',
      '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '200000\n',
      '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n',
    });
    expect(cgroupCpuLimit(readCgroupCpuFiles(read))).toBe(2);
  });
  test('nothing readable: no limit', () => {
    expect(readCgroupCpuFiles(() => undefined)).toEqual({});
  });
  test('this machine: whatever it says parses to a limit or none, never an error', () => {
    const limit = cgroupCpuLimit(readCgroupCpuFiles());
    expect(limit === undefined || limit > 0).toBe(true);
  });
});

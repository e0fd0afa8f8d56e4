import { planWorkers } from '../../../services/ca/cluster';

const cores = (n: number) => () => ({
  cores: n,
  reason: `${n} CPUs available, no cgroup CPU limit`,
});
const never = () => {
  throw new Error('the cores were read although the count was given');
};

describe('how many worker processes', () => {
  test('unset outside Kubernetes: one per usable core', () => {
    expect(planWorkers(undefined, {}, cores(4))).toEqual({
      count: 4,
      reason: 'default: one per core (4 CPUs available, no cgroup CPU limit)',
    });
  });
  test('unset on one usable core: no cluster', () => {
    expect(planWorkers(undefined, {}, cores(1)).count).toBe(1);
  });
  test('unset in Kubernetes: one process per pod, whatever the cores', () => {
    const plan = planWorkers(
      undefined,
      { KUBERNETES_SERVICE_HOST: 'kubernetes.default.svc' },
      never,
    );
    expect(plan.count).toBe(1);
    expect(plan.reason).toMatch(/^default in Kubernetes/);
  });
  test('an empty KUBERNETES_SERVICE_HOST is not Kubernetes', () => {
    expect(planWorkers(undefined, { KUBERNETES_SERVICE_HOST: '' }, cores(2)).count).toBe(2);
  });
  test('an explicit count wins, in Kubernetes too', () => {
    expect(planWorkers(1, {}, never)).toEqual({ count: 1, reason: 'MAYFLY_WORKERS=1' });
    expect(planWorkers(3, { KUBERNETES_SERVICE_HOST: 'x' }, never).count).toBe(3);
  });
  test('0 is one per usable core, in Kubernetes too', () => {
    expect(planWorkers(0, { KUBERNETES_SERVICE_HOST: 'x' }, cores(2))).toEqual({
      count: 2,
      reason: 'MAYFLY_WORKERS=0: one per core (2 CPUs available, no cgroup CPU limit)',
    });
  });
});

/** What a run records about its machine: the CPU named beyond a VM's cut-down model name. */
import { describe, expect, it } from 'vitest';
import { cpuIdentity, environmentTags } from './environment';

const zen5 = `processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512vl avx512_bf16 avx512_vnni avx_vnni
`;
const sapphire = zen5
  .replace('AuthenticAMD', 'GenuineIntel')
  .replace('26', '6')
  .replace('model\t\t: 2', 'model\t\t: 143')
  .replace('avx_vnni', 'avx_vnni amx_bf16 amx_tile amx_int8');

describe('cpuIdentity', () => {
  it('names vendor, family, model and stepping, and the vector extensions that decide which kernels run', () => {
    expect(cpuIdentity(zen5)).toBe('AuthenticAMD family 26 model 2 stepping 1: avx2 avx512f avx512_vnni avx512_bf16');
    expect(cpuIdentity(sapphire)).toBe('GenuineIntel family 6 model 143 stepping 1: avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8');
    // An AVX2-only host lists no AVX-512; a machine whose cpuinfo names nothing says so.
    expect(cpuIdentity(zen5.replace(/ avx512\w*/g, ''))).toBe('AuthenticAMD family 26 model 2 stepping 1: avx2');
    expect(cpuIdentity('')).toBe('unknown');
  });

  it('names an AArch64 CPU by implementer and part', () => {
    const arm = 'processor\t: 0\nFeatures\t: fp asimd evtstrm aes sve\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n';
    expect(cpuIdentity(arm)).toBe('implementer 0x41 part 0xd0c: asimd sve');
  });

  it("is a run's cpu.id tag", () => {
    expect(environmentTags()['cpu.id']).toBe(cpuIdentity());
  });
});

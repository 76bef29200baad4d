"""The side-by-side performance harness: `python -m benchmarks [--quick] [--out PATH]`.

Every timed figure is a median over rounds after a warm-up, measured beside its baseline in the
same process and run, so the table reports ratios that survive a noisy, shared machine.
"""

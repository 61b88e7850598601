import numpy as np
from scipy.special import erf
# Fit erf(x)/x = P(u)/Q(u), u = x^2, x in [0, 4], P degree 6, Q degree 4 (Q(0)=1), by
# iteratively reweighted linear least squares (Sanathanan-Koerner), minimising relative error.
x = np.cos(np.linspace(0, np.pi, 4000)) * 2 + 2   # Chebyshev-like nodes in [0, 4]
x = np.concatenate([x, np.linspace(0, 4, 4000)])
x = x[x > 1e-6]
u = x * x
f = erf(x) / x
dp, dq = 6, 4
w = np.ones_like(u)
for it in range(30):
    A = np.hstack([np.vander(u, dp + 1, increasing=True), -(f[:, None] * np.vander(u, dq + 1, increasing=True)[:, 1:])])
    A = A * (w / f)[:, None]
    b = f * (w / f)
    c, *_ = np.linalg.lstsq(A, b, rcond=None)
    p = c[:dp + 1]; q = np.concatenate([[1.0], c[dp + 1:]])
    Q = np.polyval(q[::-1], u)
    w = 1 / np.abs(Q)
P = np.polyval(p[::-1], u)
approx = x * P / Q
print("max abs err (f64):", np.max(np.abs(approx - erf(x))))
# float32 evaluation with Horner
xs = np.linspace(-5, 5, 200001).astype(np.float32)
xc = np.clip(xs, -4, 4); us = xc * xc
Pf = np.float32(0); 
Pf = np.zeros_like(us)
for k in reversed(range(dp + 1)): Pf = Pf * us + np.float32(p[k])
Qf = np.zeros_like(us)
for k in reversed(range(dq + 1)): Qf = Qf * us + np.float32(q[k])
ef = np.clip(xc * Pf / Qf, -1, 1)
print("max abs err (f32):", np.max(np.abs(ef.astype(np.float64) - erf(xs.astype(np.float64)))))
print("p =", [float(np.float32(v)) for v in p])
print("q =", [float(np.float32(v)) for v in q])

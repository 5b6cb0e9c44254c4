"""The margins of the laws that several claims judge alike, each with its reason.

A claim's own margins live in its module under ``claims/``; these are shared: the same law measured
on other networks (C6 and Table 1 repeat C2-C5's laws, C9 and Table 1 repeat C8's), so one number
and one reason serve them all. They are fixed before looking at data.
"""

from __future__ import annotations

#: C2/C4 (and C6, Table 1): the Hessian law is O~(1/sqrt m): a factor (log m)^k changes the local
#: slope by k / ln m, about 0.1 for k = 1/2 over our widths (ln m ~ 5); the paper's law allows no
#: more than that.
HESSIAN_SLOPE_MARGIN = 0.10

#: C3 (and C6, Table 1): K(x,x) = Theta(1); finite-width corrections to its mean are O(1/m), which
#: moves the fitted log-log slope by at most a few hundredths from width 32 upward.
KERNEL_SLOPE_MARGIN = 0.05

#: C5 (and C9): ||df/dalpha_l||_inf is the largest of m entries of size 1/sqrt(m), so it carries the
#: log factor E[max of m |N(0,1)|] ~ sqrt(2 ln m) hidden in O~: its local slope is about -0.38 over
#: widths 32..2048, not -1/2. The claim divides the norm by that factor, computed exactly, which
#: leaves an exact m^(-1/2) law for Gaussian entries. Entries below the top layer are Gaussian only
#: given the layers above; O(1/m) corrections and the sqrt(log) slack of O~ give the margin.
INF_NORM_SLOPE_MARGIN = 0.10

#: C8 (and C9, Table 1): the slope of an Omega(1) quantity must not exceed +0.2 (Theta(1), not
#: growing; harness.fit.omega1_verdict). The lower side is the limit a of y = a + c m^(-1/2): at
#: finite width the decaying part phi'(f) H of Eq. 13 pulls the slope down by up to ~0.1 where it
#: is not yet negligible, which is the c m^(-1/2) term, not a vanishing limit.
OMEGA_SLOPE_MARGIN = 0.20

#: C8 (and C9, Table 1): absolute floor under the lower 90% bound of the limit a (besides half the
#: mean at the smallest width). The rank-one term |phi''(f)| K(x,x) of Eq. 13 is 0.03-0.3 at these
#: inputs; a linear-output net at the largest shallow width has ||H|| ~ 0.002 (Eq. 5:
#: 0.77/sqrt(1e5)): a limit above 0.01 is of order one, not vanishing.
OMEGA_FLOOR = 0.01

#: C11 non-linear outputs (and C13's narrowest bottleneck, C15): Delta K = A + B with A = Theta(1)
#: (the change of phi'(f)^2, Sec. 4; at a bottleneck, of the layers around it) and B bounded by the
#: wide layers' linear-output change, O(m^-1/2) relative; B shifts log Delta K by at most
#: ~1/sqrt(32) = 0.18 in all over ln(8192/32) = 5.5, a slope of ~0.03; 0.1 leaves room for that
#: and stays far from the -1/2 of the linear law.
OMEGA1_SLOPE_MARGIN = 0.10

#: C11-C13, C15: "Omega(1)": the kernel moves by at least 10% of its norm (the lower 90% bound of the
#: limit of Delta K = a + c m^(-1/2); C12: every seed at the curve width). The linear output's
#: O(m^-1/2) law puts its Delta K near 0.01 at m ~ 1e4, an order of magnitude below.
OMEGA1_FLOOR = 0.10

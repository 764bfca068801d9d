// A C++ reference integrator for the semiclassical Holstein chain: a STAND-IN for the authors' simulator
// (which is not available here), written to the same equations with the same plain method, so that
// "how fast is a straightforward compiled simulator" can be measured side by side with qcsurrogate.
//
// Equations (plugins/holstein: docs/physics.md and HolsteinChain.rhs_real), periodic ring of L sites:
//   H(Q)   = -t T - g diag(Q)          T: nearest-neighbour adjacency of the ring (dense L x L matrix here)
//   drho   = -i (H rho - rho H)        rho: one-body density matrix (complex, L x L)
//   dQ     = P / m
//   dP     = g (n - n0) - K Q,         n = Re diag(rho)
// Classic RK4 with a fixed step, float64, one trajectory after another (one thread). H is dense and the
// commutator is two dense (real H) x (complex rho) products, as a straightforward dense simulator does.
//
// Build:  g++ -O3 -march=native -o holstein_rk4 holstein_rk4.cpp
// Run:    holstein_rk4 L n_traj n_steps dt t g K m n0 IN OUT
//   IN/OUT: raw float64, per trajectory Q[L], P[L], Re rho[L*L], Im rho[L*L] (row-major); OUT is the state
//   after n_steps. Prints the integration time in seconds (file I/O excluded) to stdout.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

struct Model { int L; double t, g, K, m, n0; };

// d(state) for one trajectory; y = [Q | P | Re rho | Im rho], H is rebuilt from Q (dense).
static void rhs(const Model& p, const double* y, double* dy, double* H) {
    const int L = p.L, LL = L * L;
    const double *Q = y, *P = y + L, *ar = y + 2 * L, *ai = y + 2 * L + LL;
    double *dQ = dy, *dP = dy + L, *dr = dy + 2 * L, *di = dy + 2 * L + LL;
    for (int i = 0; i < LL; ++i) H[i] = 0.0;
    for (int i = 0; i < L; ++i) {
        H[i * L + (i + 1) % L] += -p.t;
        H[((i + 1) % L) * L + i] += -p.t;
        H[i * L + i] += -p.g * Q[i];
    }
    // C = H rho - rho H (complex, H real); drho = -i C  ->  d Re = Im C, d Im = -Re C
    for (int i = 0; i < LL; ++i) { dr[i] = 0.0; di[i] = 0.0; }
    for (int i = 0; i < L; ++i)
        for (int k = 0; k < L; ++k) {
            const double h = H[i * L + k];
            const double* rr = ar + k * L; const double* ri = ai + k * L;
            double* cr = di + i * L; double* ci = dr + i * L;  // accumulate Re C into di, Im C into dr
            for (int j = 0; j < L; ++j) { cr[j] += h * rr[j]; ci[j] += h * ri[j]; }
        }
    for (int i = 0; i < L; ++i)
        for (int k = 0; k < L; ++k) {
            const double* hk = H + k * L;
            const double rr = ar[i * L + k], ri = ai[i * L + k];
            double* cr = di + i * L; double* ci = dr + i * L;
            for (int j = 0; j < L; ++j) { cr[j] -= rr * hk[j]; ci[j] -= ri * hk[j]; }
        }
    for (int i = 0; i < LL; ++i) di[i] = -di[i];  // d Im = -Re C
    for (int i = 0; i < L; ++i) {
        dQ[i] = P[i] / p.m;
        dP[i] = p.g * (ar[i * L + i] - p.n0) - p.K * Q[i];
    }
}

int main(int argc, char** argv) {
    if (argc != 12) {
        std::fprintf(stderr, "usage: %s L n_traj n_steps dt t g K m n0 IN OUT\n", argv[0]);
        return 2;
    }
    Model p{std::atoi(argv[1]), std::atof(argv[5]), std::atof(argv[6]), std::atof(argv[7]), std::atof(argv[8]),
            std::atof(argv[9])};
    const int n_traj = std::atoi(argv[2]);
    const long n_steps = std::atol(argv[3]);
    const double dt = std::atof(argv[4]);
    const int N = 2 * p.L + 2 * p.L * p.L;
    std::vector<double> all(static_cast<size_t>(N) * n_traj);
    FILE* in = std::fopen(argv[10], "rb");
    if (!in || std::fread(all.data(), sizeof(double), all.size(), in) != all.size()) {
        std::fprintf(stderr, "cannot read %s\n", argv[10]);
        return 1;
    }
    std::fclose(in);
    std::vector<double> k1(N), k2(N), k3(N), k4(N), tmp(N), H(p.L * p.L);
    const auto t0 = std::chrono::steady_clock::now();
    for (int b = 0; b < n_traj; ++b) {
        double* y = all.data() + static_cast<size_t>(b) * N;
        for (long s = 0; s < n_steps; ++s) {
            rhs(p, y, k1.data(), H.data());
            for (int i = 0; i < N; ++i) tmp[i] = y[i] + 0.5 * dt * k1[i];
            rhs(p, tmp.data(), k2.data(), H.data());
            for (int i = 0; i < N; ++i) tmp[i] = y[i] + 0.5 * dt * k2[i];
            rhs(p, tmp.data(), k3.data(), H.data());
            for (int i = 0; i < N; ++i) tmp[i] = y[i] + dt * k3[i];
            rhs(p, tmp.data(), k4.data(), H.data());
            for (int i = 0; i < N; ++i) y[i] += dt / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]);
        }
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    FILE* out = std::fopen(argv[11], "wb");
    if (!out || std::fwrite(all.data(), sizeof(double), all.size(), out) != all.size()) {
        std::fprintf(stderr, "cannot write %s\n", argv[11]);
        return 1;
    }
    std::fclose(out);
    std::printf("%.6f\n", secs);
    return 0;
}

// Learning-rate schedules, evaluated in the optimizer step (Network::apply_update) at the 0-based
// step s (the number of updates made before this one), with Keras's formulas:
//   exponential:     lr0 * rate^(s / decay_steps)          (staircase: floor(s / decay_steps))
//   piecewise:       values[i] for boundaries[i-1] < s <= boundaries[i] (values[0] up to
//                    boundaries[0], the last value after the last boundary)
//   polynomial:      (lr0 - end) * (1 - s' / D)^power + end, s' = min(s, D); cycle: D = decay_steps *
//                    ceil(s / decay_steps) (decay_steps at s = 0) and s' = s
//   cosine:          without warmup: lr0 * ((1 - alpha) * (1 + cos(pi * min(s, D) / D)) / 2 + alpha);
//                    with warmup (target, W steps): s' = min(s, D + W); s' < W: lr0 + (target - lr0) *
//                    s' / W, else the cosine from target over s' - W
//   cosine_restarts: f = s / first_steps; t_mul == 1: i = floor(f), f -= i; else
//                    i = floor(log(1 - f (1 - t_mul)) / log(t_mul)), f = (f - (1 - t_mul^i) / (1 - t_mul)) /
//                    t_mul^i; lr0 * ((1 - alpha) * m_mul^i * (1 + cos(pi f)) / 2 + alpha)
#pragma once
#include <cmath>
#include <vector>

namespace cnnbp {

enum class ScheduleKind : int { constant = 0, exponential = 1, piecewise = 2, polynomial = 3, cosine = 4, cosine_restarts = 5 };

struct LrSchedule {
  ScheduleKind kind = ScheduleKind::constant;
  double initial = 0.0, decay_steps = 1.0, rate = 1.0, end = 0.0, power = 1.0, alpha = 0.0;
  double warmup_target = 0.0, warmup_steps = 0.0, t_mul = 2.0, m_mul = 1.0;
  bool staircase = false, cycle = false, warmup = false;
  std::vector<double> boundaries, values;  // piecewise: values has one more entry
};

inline double schedule_lr(const LrSchedule& h, double s) {
  constexpr double pi = 3.141592653589793;
  switch (h.kind) {
    case ScheduleKind::constant: return h.initial;
    case ScheduleKind::exponential: {
      const double p = s / h.decay_steps;
      return h.initial * std::pow(h.rate, h.staircase ? std::floor(p) : p);
    }
    case ScheduleKind::piecewise: {
      size_t i = 0;
      while (i < h.boundaries.size() && s > h.boundaries[i]) ++i;
      return h.values[i];
    }
    case ScheduleKind::polynomial: {
      double D = h.decay_steps, t = s;
      if (h.cycle) D = h.decay_steps * (s == 0 ? 1.0 : std::ceil(s / h.decay_steps));
      else t = std::min(s, D);
      return (h.initial - h.end) * std::pow(1.0 - t / D, h.power) + h.end;
    }
    case ScheduleKind::cosine: {
      auto decay = [&](double t, double from) {
        return from * ((1.0 - h.alpha) * 0.5 * (1.0 + std::cos(pi * t / h.decay_steps)) + h.alpha);
      };
      if (!h.warmup) return decay(std::min(s, h.decay_steps), h.initial);
      const double t = std::min(s, h.decay_steps + h.warmup_steps);
      if (t < h.warmup_steps) return h.initial + (h.warmup_target - h.initial) * t / h.warmup_steps;
      return decay(t - h.warmup_steps, h.warmup_target);
    }
    case ScheduleKind::cosine_restarts: {
      double f = s / h.decay_steps, i;
      if (h.t_mul == 1.0) {
        i = std::floor(f);
        f -= i;
      } else {
        i = std::floor(std::log(1.0 - f * (1.0 - h.t_mul)) / std::log(h.t_mul));
        const double sum = (1.0 - std::pow(h.t_mul, i)) / (1.0 - h.t_mul);
        f = (f - sum) / std::pow(h.t_mul, i);
      }
      const double c = 0.5 * std::pow(h.m_mul, i) * (1.0 + std::cos(pi * f));
      return h.initial * ((1.0 - h.alpha) * c + h.alpha);
    }
  }
  return h.initial;
}

}  // namespace cnnbp

// Helpers shared by the answer-key diagnostics in docs/results (never
// project code: they read the label files): loading labels, embedding
// images with a trainer checkpoint, fitting and scoring linear probes, and
// reading a run's purchases. Header-only, so each diagnostic builds from
// its own CMakeLists.txt.
#ifndef DOCS_RESULTS_PROBE_FIT_H_
#define DOCS_RESULTS_PROBE_FIT_H_

#include <torch/torch.h>

#include <errno.h>  // program_invocation_short_name

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/idx_file.h"
#include "trainer/learn/model.h"
#include "trainer/run/purchase_journal.h"

namespace probe {

inline constexpr int kClasses = 10;

// Prints "<program>: message" and exits with status 2.
[[noreturn]] inline void Die(const std::string& message) {
  std::cerr << program_invocation_short_name << ": " << message << "\n";
  std::exit(2);
}

template <typename T>
inline T OrDie(absl::StatusOr<T> v) {
  if (!v.ok()) Die(std::string(v.status().ToString()));
  return *std::move(v);
}

inline torch::Tensor Labels(const std::string& path, int64_t count) {
  std::vector<uint8_t> bytes = OrDie(common::ReadIdxLabels(path, count));
  std::vector<int64_t> values(bytes.begin(), bytes.end());
  return torch::tensor(values, torch::kLong);
}

// Embeddings and logits of `images` in eval mode, 1,000 at a time.
inline std::pair<torch::Tensor, torch::Tensor> Forward(trainer::Classifier& model,
                                                const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> embeddings, logits;
  for (int64_t i = 0; i < images.size(0); i += 1000) {
    trainer::ModelOutput out =
        model->forward(images.narrow(0, i, std::min<int64_t>(1000, images.size(0) - i)));
    embeddings.push_back(out.embedding.to(torch::kFloat));
    logits.push_back(out.logits.to(torch::kFloat));
  }
  return {torch::cat(embeddings), torch::cat(logits)};
}

// Multinomial logistic regression on (x, y) with L2 weight `l2`; returns
// (weight, bias). x is already standardised.
inline std::pair<torch::Tensor, torch::Tensor> FitLinear(
    const torch::Tensor& x, const torch::Tensor& y, double l2,
    const torch::Tensor& weight = torch::Tensor()) {
  torch::manual_seed(0);
  torch::Tensor w = torch::zeros({x.size(1), kClasses}, x.options().requires_grad(true));
  torch::Tensor b = torch::zeros({kClasses}, x.options().requires_grad(true));
  torch::optim::LBFGS opt({w, b}, torch::optim::LBFGSOptions(1.0)
                                      .max_iter(500)
                                      .tolerance_grad(1e-7)
                                      .tolerance_change(1e-10)
                                      .history_size(20)
                                      .line_search_fn("strong_wolfe"));
  auto closure = [&]() -> torch::Tensor {
    opt.zero_grad();
    torch::Tensor ce = torch::nn::functional::cross_entropy(
        torch::addmm(b, x, w), y,
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
    torch::Tensor data = weight.defined() ? (ce * weight).sum() / weight.sum() : ce.mean();
    torch::Tensor loss = data + l2 * w.pow(2).sum();
    loss.backward();
    return loss;
  };
  opt.step(closure);
  return {w.detach(), b.detach()};
}

inline torch::Tensor Predict(const std::pair<torch::Tensor, torch::Tensor>& wb,
                      const torch::Tensor& x) {
  return torch::addmm(wb.second, x, wb.first).argmax(1);
}

inline double Accuracy(const torch::Tensor& pred, const torch::Tensor& y) {
  return pred.eq(y).to(torch::kDouble).mean().item<double>() * 100.0;
}

// Fits on (x, y) with the L2 weight that does best on a held-out fifth
// (a fixed random split), then refits on all of (x, y).
inline std::pair<torch::Tensor, torch::Tensor> FitChosen(const torch::Tensor& x,
                                                  const torch::Tensor& y,
                                                  double* chosen) {
  torch::manual_seed(1);
  torch::Tensor order = torch::randperm(x.size(0), torch::kLong).to(x.device());
  int64_t held = x.size(0) / 5;
  torch::Tensor h = order.narrow(0, 0, held), f = order.narrow(0, held, x.size(0) - held);
  double best = -1;
  for (double l2 : {1e-5, 1e-4, 1e-3, 1e-2}) {
    double acc = Accuracy(Predict(FitLinear(x.index({f}), y.index({f}), l2), x.index({h})),
                          y.index({h}));
    if (acc > best) best = acc, *chosen = l2;
  }
  return FitLinear(x, y, *chosen);
}

// Label propagation (Zhou et al. 2004, the form Iscen et al. 2019 use for
// deep semi-supervised learning) over the kNN graph of `e` (cosine, k
// neighbours, weights s^3), seeded with one-hot rows at `ids`: solves
// (I - alpha W_n) Z = Y, normalises each class column to unit mass, and

// ids and labels a run bought, from its purchases.log (the trainer's own
// journal parser).
inline std::pair<torch::Tensor, torch::Tensor> Bought(const std::string& path) {
  std::ifstream in(path);
  if (!in) Die("cannot open " + path);
  std::stringstream text;
  text << in.rdbuf();
  trainer::PurchaseHistory history = OrDie(trainer::ParsePurchaseJournal(text.str()));
  if (history.bought.empty()) Die("no bought lines in " + path);
  std::vector<int64_t> ids, labels;
  for (const trainer::LabelledSample& sample : history.bought) {
    ids.push_back(sample.id);
    labels.push_back(sample.label);
  }
  return {torch::tensor(ids, torch::kLong), torch::tensor(labels, torch::kLong)};
}


}  // namespace probe

#endif  // DOCS_RESULTS_PROBE_FIT_H_

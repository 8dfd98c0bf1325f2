// Diagnostic, never project code: it reads the label files (the answer
// key), so nothing it prints is a product result. It asks where a trained
// model's accuracy is lost: in its features or in its last layer.
//
// For one trainer checkpoint (a Learner checkpoint: a finished run's
// checkpoint.pt or a SimCLR cache entry) it computes the embedding (the
// globally pooled features the classifier layer reads) of the pool (the
// first --pool training images), of all 60,000 training images and of the
// 10,000 test images, with the chosen weights ("ema" or "model"), and
// prints test accuracy for:
//   head        the checkpoint's own classifier layer (the run's result)
//   head-uniform  the same with a per-class bias that makes its mean
//                 predicted distribution over the pool uniform
//   probe-bought  a linear classifier fitted on the labels the run bought
//                 (--purchases, its purchases.log), nothing else
//   probe-pool    fitted on every pool label (--pool images)
//   probe-60k     fitted on all 60,000 training labels (only when the
//                 pool is smaller)
//   knn-pool      20-nearest-neighbour vote (cosine) over the pool
//   lp-probe(-w)  (pools up to 10,000) the bought labels propagated over
//                 the pool's 50-NN graph, then a linear fit on the result
//                 (-w: weighted by certainty)
//   self-probe    a linear fit on the head's own predictions for the pool
// each overall and per class (test accuracy %, classes 0-9). The linear
// fits are multinomial logistic regression on standardised embeddings,
// full-batch L-BFGS; the L2 weight is chosen on a held-out fifth of the
// fitting set (probe-bought, lp and self: fixed). --device=cuda runs it all
// on the GPU.
//
// Build: this folder's CMakeLists.txt (probe_runs.sh builds and runs it).
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "common/idx_file.h"
#include "docs/results/probe_fit.h"
#include "trainer/learn/dataset.h"
#include "trainer/learn/model.h"
#include "trainer/run/purchase_journal.h"
#include "trainer/select/feature_quality.h"

namespace {

using probe::Accuracy;
using probe::Bought;
using probe::Die;
using probe::FitChosen;
using probe::FitLinear;
using probe::Forward;
using probe::kClasses;
using probe::Labels;
using probe::OrDie;
using probe::Predict;

struct Args {
  std::string checkpoint;
  std::string weights = "ema";
  std::string arch = "cnn";
  int width = 16;
  int64_t pool = 5000;
  std::string purchases;
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  std::string name;
  std::string device = "cpu";
};

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    size_t eq = s.find('=');
    if (s.rfind("--", 0) != 0 || eq == std::string::npos) Die("bad flag " + s);
    std::string key = s.substr(2, eq - 2), value = s.substr(eq + 1);
    if (key == "checkpoint") a.checkpoint = value;
    else if (key == "weights") a.weights = value;
    else if (key == "arch") a.arch = value;
    else if (key == "width") a.width = std::stoi(value);
    else if (key == "pool") a.pool = std::stoll(value);
    else if (key == "purchases") a.purchases = value;
    else if (key == "data_dir") a.data_dir = value;
    else if (key == "name") a.name = value;
    else if (key == "device") a.device = value;
    else Die("unknown flag --" + key);
  }
  if (a.checkpoint.empty()) Die("--checkpoint is required");
  if (a.weights != "ema" && a.weights != "model") Die("--weights: ema|model");
  if (a.name.empty()) a.name = a.checkpoint;
  return a;
}

// returns the row-normalised class distributions [N, classes].
torch::Tensor Propagate(const torch::Tensor& e, const torch::Tensor& ids,
                        const torch::Tensor& labels, int k, double alpha) {
  const int64_t n = e.size(0);
  torch::Tensor x = torch::nn::functional::normalize(
      e.to(torch::kDouble), torch::nn::functional::NormalizeFuncOptions().dim(1));
  torch::Tensor sim = x.mm(x.t());
  sim.fill_diagonal_(-2.0);
  auto [values, index] = sim.topk(k, 1);
  torch::Tensor w = torch::zeros({n, n}, x.options())
                        .scatter_(1, index, values.clamp_min(0).pow(3));
  w = w + w.t();
  torch::Tensor d = w.sum(1).clamp_min(1e-12).rsqrt();
  torch::Tensor wn = d.unsqueeze(1) * w * d.unsqueeze(0);
  torch::Tensor y = torch::zeros({n, kClasses}, x.options());
  y.index_put_({ids, labels}, 1.0);
  // at::, not torch::linalg: Debian's LibTorch 2.6 headers lack torch/linalg.h.
  torch::Tensor z = at::linalg_solve(
      torch::eye(n, x.options()) - alpha * wn, y, /*left=*/true);
  z = z.clamp_min(0);
  z = z / z.sum(0, true).clamp_min(1e-12);
  return (z / z.sum(1, true).clamp_min(1e-12)).to(torch::kFloat);
}

std::string PerClass(const torch::Tensor& pred, const torch::Tensor& y) {
  std::ostringstream s;
  for (int c = 0; c < kClasses; ++c) {
    torch::Tensor m = y.eq(c);
    char buf[16];
    std::snprintf(buf, sizeof buf, "%s%.1f", c ? " " : "",
                  Accuracy(pred.index({m}), y.index({m})));
    s << buf;
  }
  return s.str();
}

}  // namespace

int Run(const Args& args);

int main(int argc, char** argv) {
  Args args = Parse(argc, argv);
  try {
    return Run(args);
  } catch (const c10::Error& e) {
    Die(e.what_without_backtrace());
  }
}

int Run(const Args& args) {
  trainer::ModelOptions options;
  options.arch = args.arch;
  options.width = args.width;
  trainer::Classifier model = OrDie(trainer::MakeModel(options));
  {
    torch::serialize::InputArchive archive, part;
    archive.load_from(args.checkpoint, torch::Device(args.device));
    archive.read(args.weights, part);
    model->load(part);
  }
  const torch::Device device(args.device);
  model->to(device);
  model->eval();

  torch::Tensor train_x = OrDie(trainer::LoadImages(
      args.data_dir + "/train-images-idx3-ubyte.gz", 60000, device));
  torch::Tensor test_x = OrDie(trainer::LoadImages(
      args.data_dir + "/t10k-images-idx3-ubyte.gz", 10000, device));
  torch::Tensor train_y =
      Labels(args.data_dir + "/train-labels-idx1-ubyte.gz", 60000).to(device);
  torch::Tensor test_y =
      Labels(args.data_dir + "/t10k-labels-idx1-ubyte.gz", 10000).to(device);

  auto [train_e, train_logits] = Forward(model, train_x);
  auto [test_e, test_logits] = Forward(model, test_x);
  torch::Tensor pool_e = train_e.narrow(0, 0, args.pool);
  torch::Tensor pool_y = train_y.narrow(0, 0, args.pool);
  torch::Tensor mean = pool_e.mean(0), std = pool_e.std(0) + 1e-6;
  auto z = [&](const torch::Tensor& e) { return (e - mean) / std; };

  std::vector<std::tuple<std::string, torch::Tensor, std::string>> rows;
  rows.emplace_back("head", test_logits.argmax(1), "");
  // The head with a per-class bias that makes its mean predicted
  // distribution over the pool uniform (label-free; assumes a balanced
  // pool): b <- b - log(mean softmax(pool logits + b)) - log C, to a fixed
  // point.
  {
    torch::Tensor pool_logits = train_logits.narrow(0, 0, args.pool).to(torch::kDouble);
    torch::Tensor b = torch::zeros({kClasses}, pool_logits.options());
    for (int i = 0; i < 200; ++i) {
      torch::Tensor marginal = torch::softmax(pool_logits + b, 1).mean(0);
      b = b - marginal.log() - std::log(double(kClasses));
    }
    rows.emplace_back("head-uniform", (test_logits.to(torch::kDouble) + b).argmax(1),
                      "pool marginal made uniform");
  }
  if (!args.purchases.empty()) {
    auto [bought_ids, bought_labels] = Bought(args.purchases);
    torch::Tensor ids = bought_ids.to(device), labels = bought_labels.to(device);
    if (!train_y.index({ids}).equal(labels)) Die("purchases.log labels differ from the label file");
    auto wb = FitLinear(z(train_e.index({ids})), labels, 1e-3);
    rows.emplace_back("probe-bought", Predict(wb, z(test_e)),
                      "n=" + std::to_string(ids.size(0)) + " l2=1e-3");
    // Label-free from here on except the bought labels: propagate them
    // over the pool's graph, then fit a linear head on the propagated
    // labels (plain, and weighted by 1 - entropy / log C).
    // A dense graph: only for pools up to 10,000 images (the CPU's 5,000).
    if (args.pool <= 10000) {
    torch::Tensor p = Propagate(pool_e, ids, labels, 50, 0.99);
    torch::Tensor propagated = p.argmax(1);
    torch::Tensor certainty =
        1.0 + (p * p.clamp_min(1e-12).log()).sum(1) / std::log(double(kClasses));
    std::printf("%s\tpool: head %.2f  propagated %.2f  (of %lld pool images)\n",
                args.name.c_str(), Accuracy(train_logits.narrow(0, 0, args.pool).argmax(1), pool_y),
                Accuracy(propagated, pool_y), static_cast<long long>(args.pool));
    rows.emplace_back("lp-probe", Predict(FitLinear(z(pool_e), propagated, 1e-4), z(test_e)),
                      "k=50 alpha=0.99 l2=1e-4");
    rows.emplace_back("lp-probe-w",
                      Predict(FitLinear(z(pool_e), propagated, 1e-4, certainty), z(test_e)),
                      "weighted by certainty");
    }
    // The model's own pseudo-labels of the pool, as a control for lp-probe.
    rows.emplace_back("self-probe",
                      Predict(FitLinear(z(pool_e), train_logits.narrow(0, 0, args.pool).argmax(1), 1e-4),
                              z(test_e)),
                      "head's argmax on the pool");
  }
  double l2 = 0;
  auto wb_pool = FitChosen(z(pool_e), pool_y, &l2);
  rows.emplace_back("probe-pool", Predict(wb_pool, z(test_e)),
                    "n=" + std::to_string(args.pool) + " l2=" + std::to_string(l2));
  if (args.pool < 60000) {
    auto wb_all = FitChosen(z(train_e), train_y, &l2);
    rows.emplace_back("probe-60k", Predict(wb_all, z(test_e)),
                      "n=60000 l2=" + std::to_string(l2));
  }
  rows.emplace_back("knn-pool", OrDie(trainer::KnnClassify(pool_e, pool_y, test_e, {})),
                    "k=20 n=" + std::to_string(args.pool));

  for (const auto& [what, pred, note] : rows) {
    std::printf("%s\t%s\t%.2f\t%s\t%s\n", args.name.c_str(), what.c_str(),
                Accuracy(pred, test_y), PerClass(pred, test_y).c_str(), note.c_str());
  }
  return 0;
}

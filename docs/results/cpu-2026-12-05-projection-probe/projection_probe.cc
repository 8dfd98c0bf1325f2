// Diagnostic, never project code: it reads the label files (the answer
// key). Does SimCLR's projection head hold features that read better with
// 100 labels than the embedding the classifier layer reads (SimCLR v2
// fine-tunes from the head's first layer)? For one SimCLR checkpoint (a
// pretraining cache entry, --weights=model) it computes, for the pool (the
// first --pool training images) and the test set:
//   h     the embedding (globally pooled features)
//   g1    relu(bn(W1 h)), the projection head's hidden layer
//   z     W2 g1, the projection the contrastive loss saw
//   h+g1  both side by side
// and prints test accuracy of multinomial logistic regression on the
// standardised features fitted on the run's bought labels (--purchases,
// L2 1e-3 and 1e-2), a cosine nearest-centroid classifier on the same
// labels, and a fit on every pool label (L2 chosen on a held-out fifth).
// --hidden: the head's hidden width (0: the embedding's size, the default).
//
// Build: this folder's CMakeLists.txt (cmake -S . -B BUILD; BUILD/projprobe).
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "common/idx_file.h"
#include "trainer/learn/dataset.h"
#include "trainer/learn/model.h"
#include "trainer/learn/heads.h"
#include "trainer/run/purchase_journal.h"
#include "trainer/select/feature_quality.h"

namespace {

constexpr int kClasses = 10;

struct Args {
  std::string checkpoint;
  std::string weights = "ema";
  std::string arch = "cnn";
  int width = 16;
  int64_t pool = 5000;
  std::string purchases;
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  std::string name;
  int64_t hidden = 0;
};

[[noreturn]] void Die(const std::string& message) {
  std::cerr << "linear_probe: " << message << "\n";
  std::exit(2);
}

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
    else if (key == "hidden") a.hidden = std::stoll(value);
    else Die("unknown flag --" + key);
  }
  if (a.checkpoint.empty()) Die("--checkpoint is required");
  if (a.weights != "ema" && a.weights != "model") Die("--weights: ema|model");
  if (a.name.empty()) a.name = a.checkpoint;
  return a;
}

template <typename T>
T OrDie(absl::StatusOr<T> v) {
  if (!v.ok()) Die(std::string(v.status().ToString()));
  return *std::move(v);
}

torch::Tensor Labels(const std::string& path, int64_t count) {
  std::vector<uint8_t> bytes = OrDie(common::ReadIdxLabels(path, count));
  std::vector<int64_t> values(bytes.begin(), bytes.end());
  return torch::tensor(values, torch::kLong);
}

// Embeddings and logits of `images` in eval mode, 1,000 at a time.
std::pair<torch::Tensor, torch::Tensor> Forward(trainer::Classifier& model,
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
std::pair<torch::Tensor, torch::Tensor> FitLinear(
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

torch::Tensor Predict(const std::pair<torch::Tensor, torch::Tensor>& wb,
                      const torch::Tensor& x) {
  return torch::addmm(wb.second, x, wb.first).argmax(1);
}

double Accuracy(const torch::Tensor& pred, const torch::Tensor& y) {
  return pred.eq(y).to(torch::kDouble).mean().item<double>() * 100.0;
}

// Fits on (x, y) with the L2 weight that does best on a held-out fifth
// (a fixed random split), then refits on all of (x, y).
std::pair<torch::Tensor, torch::Tensor> FitChosen(const torch::Tensor& x,
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

// ids and labels a run bought, from its purchases.log (the trainer's own
// journal parser).
std::pair<torch::Tensor, torch::Tensor> Bought(const std::string& path) {
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

// Features h, g1 = relu(bn(W1 h)), z = W2 g1 of a SimCLR checkpoint.
int Run(const Args& args) {
  trainer::ModelOptions options;
  options.arch = args.arch;
  options.width = args.width;
  trainer::Classifier model = OrDie(trainer::MakeModel(options));
  trainer::ProjectionHeadOptions head_options;
  head_options.input_dim = model->embedding_dim();
  head_options.hidden_dim = args.hidden;
  head_options.output_dim = 128;
  trainer::ProjectionHead head(head_options);
  {
    torch::serialize::InputArchive archive, weights, objective;
    archive.load_from(args.checkpoint);
    archive.read(args.weights, weights);
    model->load(weights);
    archive.read("objective_state", objective);
    trainer::ReadProjectionHead(head, objective, "projection_head");
  }
  model->eval();
  head->eval();
  const std::string images = "-images-idx3-ubyte.gz", labels_file = "-labels-idx1-ubyte.gz";
  torch::Tensor pool_x = OrDie(trainer::LoadImages(args.data_dir + "/train" + images, 60000,
                                                   torch::kCPU)).narrow(0, 0, args.pool);
  torch::Tensor test_x = OrDie(trainer::LoadImages(args.data_dir + "/t10k" + images, 10000,
                                                   torch::kCPU));
  torch::Tensor pool_y = Labels(args.data_dir + "/train" + labels_file, 60000).narrow(0, 0, args.pool);
  torch::Tensor test_y = Labels(args.data_dir + "/t10k" + labels_file, 10000);

  auto children = head->named_children();
  auto features = [&](const torch::Tensor& x) {
    torch::NoGradGuard no_grad;
    torch::Tensor h = Forward(model, x).first;
    torch::Tensor g1 = torch::relu(children["norm"]->as<torch::nn::BatchNorm1d>()->forward(
        children["hidden"]->as<torch::nn::Linear>()->forward(h)));
    torch::Tensor z = children["output"]->as<torch::nn::Linear>()->forward(g1);
    return std::vector<torch::Tensor>{h, g1, z, torch::cat({h, g1}, 1)};
  };
  const std::vector<torch::Tensor> pool_f = features(pool_x), test_f = features(test_x);
  const char* names[] = {"h", "g1", "z", "h+g1"};
  auto [ids, labels] = Bought(args.purchases);
  auto print = [&](const char* name, const std::string& what, double accuracy) {
    std::printf("%s\t%s\t%s\t%.2f\n", args.name.c_str(), name, what.c_str(), accuracy);
  };
  for (int k = 0; k < 4; ++k) {
    torch::Tensor mean = pool_f[k].mean(0), sd = pool_f[k].std(0) + 1e-6;
    auto standardise = [&](const torch::Tensor& e) { return (e - mean) / sd; };
    for (double l2 : {1e-3, 1e-2}) {
      auto wb = FitLinear(standardise(pool_f[k].index({ids})), labels, l2);
      print(names[k], "probe-bought l2=" + std::to_string(l2),
            Accuracy(Predict(wb, standardise(test_f[k])), test_y));
    }
    auto unit = torch::nn::functional::NormalizeFuncOptions().dim(1);
    torch::Tensor centroids = torch::zeros({kClasses, pool_f[k].size(1)});
    centroids.index_add_(0, labels, torch::nn::functional::normalize(pool_f[k], unit).index({ids}));
    print(names[k], "nearest-centroid",
          Accuracy(torch::nn::functional::normalize(test_f[k], unit).mm(centroids.t()).argmax(1),
                   test_y));
    double chosen = 0;
    auto wb_pool = FitChosen(standardise(pool_f[k]), pool_y, &chosen);
    print(names[k], "probe-pool l2=" + std::to_string(chosen),
          Accuracy(Predict(wb_pool, standardise(test_f[k])), test_y));
    std::fflush(stdout);
  }
  return 0;
}

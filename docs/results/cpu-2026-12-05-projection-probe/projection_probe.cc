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
// Build: this folder's CMakeLists.txt (cmake -S . -B BUILD; BUILD/projection_probe).
#include <torch/torch.h>

#include <cstdio>
#include <string>
#include <vector>

#include "docs/results/probe_fit.h"
#include "trainer/learn/dataset.h"
#include "trainer/learn/heads.h"
#include "trainer/learn/model.h"

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
  int64_t hidden = 0;
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
    else if (key == "hidden") a.hidden = std::stoll(value);
    else Die("unknown flag --" + key);
  }
  if (a.checkpoint.empty()) Die("--checkpoint is required");
  if (a.weights != "ema" && a.weights != "model") Die("--weights: ema|model");
  if (a.name.empty()) a.name = a.checkpoint;
  return a;
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

#include "trainer/pretrain/pretrain_stage.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "common/status_matchers.h"
#include "trainer/learn/augment.h"
#include "trainer/learn/learner.h"
#include "trainer/objectives/byol.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using ::testing::HasSubstr;

// A toy pool: 64 images of four distinct patterns (bars and blocks) with a
// little noise, [64, 1, 28, 28] in [0, 1].
torch::Tensor ToyPool() {
  torch::manual_seed(0);
  torch::Tensor pool = torch::zeros({64, 1, 28, 28});
  for (int64_t i = 0; i < 64; ++i) {
    switch (i % 4) {
      case 0: pool[i][0].narrow(0, 4, 6).fill_(1.0); break;
      case 1: pool[i][0].narrow(1, 4, 6).fill_(1.0); break;
      case 2: pool[i][0].narrow(0, 10, 8).narrow(1, 10, 8).fill_(1.0); break;
      default: pool[i][0].narrow(0, 20, 4).fill_(0.6); break;
    }
  }
  return (pool + 0.05 * torch::rand({64, 1, 28, 28})).clamp(0, 1);
}

PretrainOptions TinyOptions(const std::string& cache) {
  PretrainOptions options;
  options.method = "simclr";
  options.steps = 40;
  options.log_every = 5;
  options.objective.simclr.batch_size = 16;
  options.objective.simclr.projection_dim = 16;
  options.learner.lr = 0.05;
  options.learner.cosine_span = 0.5;
  options.cache_dir = cache;
  return options;
}

ModelOptions TinyModel() {
  ModelOptions model;
  model.width = 4;
  return model;
}

std::string TempDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/pretrain_stage_test_" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

TEST(PretrainStageTest, LowersTheLossAndCachesTheCheckpoint) {
  const std::string cache = TempDir("cache");
  torch::Tensor pool = ToyPool();
  PretrainOptions options = TinyOptions(cache);
  std::vector<PretrainStepReport> reports;
  auto result = RunPretraining(
      options, TinyModel(), pool, torch::kCPU, /*seed=*/1,
      [&](const PretrainStepReport& r) { reports.push_back(r); }, nullptr);
  ASSERT_THAT(result, IsOk());
  EXPECT_FALSE(result->reused);
  EXPECT_EQ(result->steps, 40);
  ASSERT_EQ(reports.size(), 8u);
  ASSERT_EQ(result->loss_curve.size(), 8u);
  for (size_t i = 0; i < reports.size(); ++i) {
    const PretrainStepReport& r = reports[i];
    EXPECT_EQ(r.step, 5 * static_cast<int64_t>(i + 1));
    EXPECT_EQ(r.loss, result->loss_curve[i].second);
    EXPECT_GE(r.steps_per_s, 0.0);
    // The rate the reported step trained at, on the stage's cosine.
    EXPECT_DOUBLE_EQ(r.lr, CosineLearningRate(0.05, r.step - 1, 40, 0.5))
        << "step " << r.step;
  }
  EXPECT_GT(reports.front().lr, reports.back().lr);
  double first = 0, last = 0;
  for (int i = 0; i < 2; ++i) first += result->loss_curve[i].second;
  for (int i = 6; i < 8; ++i) last += result->loss_curve[i].second;
  EXPECT_LT(last, first) << "the NT-Xent loss should fall on a toy pool";
  EXPECT_TRUE(std::filesystem::exists(result->checkpoint));
  EXPECT_THAT(result->checkpoint, HasSubstr(cache));

  // The same inputs reuse the checkpoint without training.
  auto again = RunPretraining(options, TinyModel(), pool, torch::kCPU, 1,
                              nullptr, nullptr);
  ASSERT_THAT(again, IsOk());
  EXPECT_TRUE(again->reused);
  EXPECT_EQ(again->checkpoint, result->checkpoint);
  EXPECT_TRUE(again->loss_curve.empty());
}

TEST(PretrainStageTest, KeyChangesWithPoolModelSettingsAndSeed) {
  torch::Tensor pool = ToyPool();
  PretrainOptions options = TinyOptions(TempDir("keys"));
  auto base = PretrainCacheKey(pool, TinyModel(), options, 1);
  ASSERT_THAT(base, IsOk());
  EXPECT_EQ(*base, *PretrainCacheKey(pool.clone(), TinyModel(), options, 1));

  torch::Tensor changed = pool.clone();
  changed[3][0][5][5] = 1.0 - changed[3][0][5][5].item<float>();
  EXPECT_NE(*base, *PretrainCacheKey(changed, TinyModel(), options, 1));
  EXPECT_NE(*base, *PretrainCacheKey(pool.narrow(0, 0, 32), TinyModel(),
                                     options, 1));
  ModelOptions wider = TinyModel();
  wider.width = 8;
  EXPECT_NE(*base, *PretrainCacheKey(pool, wider, options, 1));
  PretrainOptions warmer = options;
  warmer.objective.simclr.temperature = 0.5;
  EXPECT_NE(*base, *PretrainCacheKey(pool, TinyModel(), warmer, 1));
  PretrainOptions longer = options;
  longer.steps = 41;
  EXPECT_NE(*base, *PretrainCacheKey(pool, TinyModel(), longer, 1));
  EXPECT_NE(*base, *PretrainCacheKey(pool, TinyModel(), options, 2));
  PretrainOptions jittered = options;
  jittered.objective.simclr.augment.colour = ContrastiveColour::kJitter;
  auto jitter_key = PretrainCacheKey(pool, TinyModel(), jittered, 1);
  ASSERT_THAT(jitter_key, IsOk());
  EXPECT_NE(*base, *jitter_key);
  jittered.objective.simclr.augment.jitter_strength = 0.8;
  EXPECT_NE(*jitter_key, *PretrainCacheKey(pool, TinyModel(), jittered, 1));
  // Multi-crop: each local setting counts once local crops are on; without
  // them the local settings do not (earlier keys stay valid).
  auto key_with = [&](const PretrainOptions& from, auto change) {
    PretrainOptions changed_options = from;
    change(changed_options.objective.simclr);
    return *PretrainCacheKey(pool, TinyModel(), changed_options, 1);
  };
  EXPECT_EQ(*base, key_with(options,
                            [](SimClrOptions& s) { s.local_crop_size = 12; }));
  PretrainOptions local = options;
  local.objective.simclr.local_crops = 2;
  const std::string local_key = *PretrainCacheKey(pool, TinyModel(), local, 1);
  EXPECT_NE(*base, local_key);
  EXPECT_NE(local_key,
            key_with(local, [](SimClrOptions& s) { s.local_crops = 4; }));
  EXPECT_NE(local_key,
            key_with(local, [](SimClrOptions& s) { s.local_crop_size = 12; }));
  EXPECT_NE(local_key, key_with(local, [](SimClrOptions& s) {
              s.local_crop_scale_min = 0.2;
            }));
  EXPECT_NE(local_key, key_with(local, [](SimClrOptions& s) {
              s.local_crop_scale_max = 0.5;
            }));
}

// Every setting of the contrastive views' pixel ops and their side counts,
// not only num_ops: a cache must not hand back a checkpoint trained with
// other views. The defaults add nothing (earlier keys stay valid).
TEST(PretrainStageTest, KeyChangesWithEveryPixelOpSetting) {
  torch::Tensor pool = ToyPool();
  PretrainOptions options = TinyOptions(TempDir("pixel-keys"));
  const std::string base = *PretrainCacheKey(pool, TinyModel(), options, 1);
  auto key_with = [&](auto change) {
    PretrainOptions changed = options;
    change(changed.objective.simclr.augment);
    return *PretrainCacheKey(pool, TinyModel(), changed, 1);
  };
  EXPECT_EQ(base, key_with([](ContrastiveAugmentOptions& a) {
              a.strong = ContrastivePixelOptions();
            }));
  const std::vector<std::function<void(ContrastiveAugmentOptions&)>> changes = {
      [](ContrastiveAugmentOptions& a) {
        a.strong.ops = {StrongOp::kIdentity, StrongOp::kSolarize};
      },
      [](ContrastiveAugmentOptions& a) { a.strong.ops.clear(); },
      [](ContrastiveAugmentOptions& a) { a.strong.max_rotate_degrees = 10; },
      [](ContrastiveAugmentOptions& a) { a.strong.max_shear = 0.1; },
      [](ContrastiveAugmentOptions& a) { a.strong.max_translate = 0.1; },
      [](ContrastiveAugmentOptions& a) { a.strong.min_posterize_bits = 6; },
      [](ContrastiveAugmentOptions& a) { a.strong.min_enhance = 0.05; },
      [](ContrastiveAugmentOptions& a) { a.strong.max_enhance = 1.0; },
      [](ContrastiveAugmentOptions& a) { a.strong.cutout_max_fraction = 0.5; },
      [](ContrastiveAugmentOptions& a) { a.strong.cutout_fill = 0.0f; },
      [](ContrastiveAugmentOptions& a) { a.strong.geometric_fill = 0.5f; },
      [](ContrastiveAugmentOptions& a) { a.output_size = 16; }};
  std::set<std::string> keys = {base};
  for (size_t i = 0; i < changes.size(); ++i) {
    EXPECT_TRUE(keys.insert(key_with(changes[i])).second)
        << "change " << i << " left the key as an earlier one";
  }
  // BYOL's views count the same way.
  PretrainOptions byol = options;
  byol.method = "byol";
  const std::string byol_key = *PretrainCacheKey(pool, TinyModel(), byol, 1);
  byol.objective.byol.augment.strong.max_enhance = 1.0;
  EXPECT_NE(byol_key, *PretrainCacheKey(pool, TinyModel(), byol, 1));
}

TEST(PretrainStageTest, ChangedSettingDoesNotReuse) {
  const std::string cache = TempDir("changed");
  torch::Tensor pool = ToyPool();
  PretrainOptions options = TinyOptions(cache);
  options.steps = 4;
  auto first = RunPretraining(options, TinyModel(), pool, torch::kCPU, 0,
                              nullptr, nullptr);
  ASSERT_THAT(first, IsOk());
  options.objective.simclr.temperature = 0.5;
  auto second = RunPretraining(options, TinyModel(), pool, torch::kCPU, 0,
                               nullptr, nullptr);
  ASSERT_THAT(second, IsOk());
  EXPECT_FALSE(second->reused);
  EXPECT_NE(second->checkpoint, first->checkpoint);
}

TEST(PretrainStageTest, StopLeavesNoCacheEntry) {
  const std::string cache = TempDir("stop");
  std::atomic<bool> stop{true};
  EXPECT_THAT(RunPretraining(TinyOptions(cache), TinyModel(), ToyPool(),
                             torch::kCPU, 0, nullptr, &stop),
              StatusIs(absl::StatusCode::kCancelled));
  int entries = 0;
  if (std::filesystem::exists(cache)) {
    for (const auto& entry : std::filesystem::directory_iterator(cache)) {
      (void)entry;
      ++entries;
    }
  }
  EXPECT_EQ(entries, 0);
}

TEST(PretrainStageTest, RejectsBadMethodsAndSteps) {
  PretrainOptions options = TinyOptions(TempDir("bad"));
  options.method = "none";
  EXPECT_THAT(RunPretraining(options, TinyModel(), ToyPool(), torch::kCPU, 0,
                             nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown pretraining method 'none'")));
  options.method = "fixmatch";
  EXPECT_THAT(RunPretraining(options, TinyModel(), ToyPool(), torch::kCPU, 0,
                             nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.method = "simclr";
  options.steps = 0;
  EXPECT_THAT(RunPretraining(options, TinyModel(), ToyPool(), torch::kCPU, 0,
                             nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("positive")));
}

TEST(PretrainStageTest, ByolHasItsOwnKeyWithItsSettings) {
  torch::Tensor pool = ToyPool();
  PretrainOptions simclr = TinyOptions(TempDir("byol_keys"));
  PretrainOptions byol = simclr;
  byol.method = "byol";
  auto simclr_key = PretrainCacheKey(pool, TinyModel(), simclr, 1);
  auto byol_key = PretrainCacheKey(pool, TinyModel(), byol, 1);
  ASSERT_THAT(simclr_key, IsOk());
  ASSERT_THAT(byol_key, IsOk());
  EXPECT_NE(*simclr_key, *byol_key);
  // BYOL's settings change its key; SimCLR's temperature does not.
  PretrainOptions slower = byol;
  slower.objective.byol.target_decay = 0.999;
  EXPECT_NE(*byol_key, *PretrainCacheKey(pool, TinyModel(), slower, 1));
  PretrainOptions larger = byol;
  larger.objective.byol.batch_size = 32;
  EXPECT_NE(*byol_key, *PretrainCacheKey(pool, TinyModel(), larger, 1));
  PretrainOptions cropped = byol;
  cropped.objective.byol.augment.crop.scale_min = 0.5;
  EXPECT_NE(*byol_key, *PretrainCacheKey(pool, TinyModel(), cropped, 1));
  PretrainOptions warmer = byol;
  warmer.objective.simclr.temperature = 0.5;
  EXPECT_EQ(*byol_key, *PretrainCacheKey(pool, TinyModel(), warmer, 1));
}

TEST(PretrainStageTest, ByolTrainsWithTheLearnersEmaAsItsTarget) {
  const std::string cache = TempDir("byol");
  PretrainOptions options = TinyOptions(cache);
  options.method = "byol";
  options.steps = 5;
  options.objective.byol.batch_size = 16;
  options.objective.byol.hidden_dim = 16;
  options.objective.byol.projection_dim = 8;
  // Decay 0: the target is the online model after every step, which the
  // checkpoint's EMA copy shows (the learner's default decay is 0.999).
  options.objective.byol.target_decay = 0.0;
  auto result = RunPretraining(options, TinyModel(), ToyPool(), torch::kCPU,
                               /*seed=*/3, nullptr, nullptr);
  ASSERT_THAT(result, IsOk());
  EXPECT_THAT(result->checkpoint, HasSubstr("byol-"));
  ASSERT_FALSE(result->loss_curve.empty());
  for (const auto& [step, loss] : result->loss_curve) {
    EXPECT_TRUE(std::isfinite(loss)) << step;
  }

  ModelOptions model = TinyModel();
  model.init_seed = 3;
  auto probe = MakeModel(model);
  ASSERT_THAT(probe, IsOk());
  auto objective = ByolObjective::Create(options.objective.byol,
                                         (*probe)->embedding_dim(),
                                         torch::kCPU, 3);
  ASSERT_THAT(objective, IsOk());
  auto learner = Learner::Create(model, LearnerOptions(),
                                 *std::move(objective), torch::kCPU);
  ASSERT_THAT(learner, IsOk());
  ASSERT_THAT((*learner)->Load(result->checkpoint), IsOk());
  EXPECT_EQ((*learner)->step(), 5);
  const auto online = (*learner)->model()->parameters();
  const auto target = (*learner)->ema_model()->parameters();
  ASSERT_EQ(online.size(), target.size());
  for (size_t i = 0; i < online.size(); ++i) {
    EXPECT_TRUE(torch::equal(online[i], target[i])) << i;
  }
}

}  // namespace
}  // namespace trainer

// What a Learner hands a training objective for one step, in toy sizes, for
// objective tests that call Loss directly: a 3-class width-4 classifier with
// its EMA copy and a generator, and a pool of random images.
#ifndef TESTS_TRAINER_TOY_STEP_H_
#define TESTS_TRAINER_TOY_STEP_H_

#include <ATen/ATen.h>

#include "trainer/learn/augment.h"
#include "trainer/learn/model.h"
#include "trainer/learn/objective.h"

namespace trainer {

// A classifier, its copy and a generator.
struct ToyContext {
  Classifier model{nullptr};
  Classifier ema{nullptr};
  at::Generator generator;

  StepContext context() {
    return StepContext{model, ema, generator, /*channels_last=*/false};
  }
};

// The model in train mode, the copy in eval mode, the generator seeded 5;
// the initial weights follow the global torch seed.
inline ToyContext MakeToyContext() {
  ModelOptions options;
  options.width = 4;
  options.num_classes = 3;
  ToyContext toy;
  toy.model = *MakeModel(options);
  toy.ema = *MakeModel(options);
  toy.model->train();
  toy.ema->eval();
  toy.generator = *MakeGenerator(at::kCPU, 5);
  return toy;
}

// 5 labelled images (all class 2) and 20 unlabelled ones, the same on every
// call.
inline StepData ToyStepData() {
  at::Generator gen = *MakeGenerator(at::kCPU, 9);
  StepData data;
  data.labelled_images = at::rand({5, 1, 28, 28}, gen);
  data.labelled_targets = at::full({5}, 2, at::kLong);
  data.unlabelled_images = at::rand({20, 1, 28, 28}, gen);
  return data;
}

}  // namespace trainer

#endif  // TESTS_TRAINER_TOY_STEP_H_

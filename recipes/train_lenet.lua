-- train_lenet.lua: the reference LeNet-5 training run on Fashion-MNIST, the dense model every
-- pruning recipe starts from. SGD with Nesterov momentum 0.9, weight decay 5e-4 and a cosine
-- learning rate over the epochs; batch 128. With the defaults (15 epochs on the whole set) it
-- reaches about 91.5% test accuracy; see the README for the figures and the command.
--
--   prunert recipes/train_lenet.lua [--epochs 15] [--lr 0.05] [--save lenet.prunert]
local pr = require "prunert"
local cli = require "prunert.cli"
local nn = pr.nn

local opt = cli.parse(arg, {
    name = "train_lenet",
    summary = "Train LeNet-5 on Fashion-MNIST (or --data DIR) to its reference accuracy.",
    cli.common{epochs = 15, lr = 0.05, batch = 128},
    {"weight_decay", "number", 5e-4, "L2 weight decay"},
    {"save", "string", nil, "save the trained model to this file", metavar = "FILE"},
})
if opt.threads then pr.set_threads(opt.threads) end
pr.seed(opt.seed)

local train_set, test_set = cli.datasets(opt)
print(string.format("data: %d training, %d test images", train_set:size(), test_set:size()))

local model = nn.Sequential(
    nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
print(model)

local optimizer = pr.optim.SGD(model:parameters(), {lr = opt.lr, momentum = 0.9, nesterov = true,
                                                    weight_decay = opt.weight_decay})
local schedule = pr.optim.schedule.cosine(optimizer, {T_max = math.max(opt.epochs, 1)})
local t0 = pr.clock()
local history = pr.train.fit(model, train_set, {epochs = opt.epochs, batch = opt.batch, optimizer = optimizer,
                                                schedule = schedule, val = test_set})
local seconds = pr.clock() - t0
local loss, acc = pr.train.evaluate(model, test_set)
print(string.format("test accuracy %.2f%% (loss %.4f) after %d epochs in %.0f s", 100 * acc, loss, opt.epochs, seconds))

if opt.save then
    local ok, err = pr.save(model, opt.save, {recipe = "train_lenet", epochs = opt.epochs, lr = opt.lr,
                                              test_accuracy = acc, history = history})
    if not ok then io.stderr:write(err, "\n") os.exit(1) end
    print("saved " .. opt.save)
end

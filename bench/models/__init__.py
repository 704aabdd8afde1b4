"""The model zoo: the paper's native networks, the CIFAR networks, and timm/torchvision models with CIFAR stems."""

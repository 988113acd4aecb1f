"""What did the network look at: gradient saliency maps and Grad-CAM, computed by the same C++
backward pass that trains the network (with the input gradient of the first layer switched on).

Both call the network's forward pass in inference mode and then a backward pass from one class
score; they overwrite the parameter-gradient buffer (the next training step recomputes it)."""

import numpy as np

__all__ = ["saliency", "grad_cam"]


def _score_layer(model):
    """Index one past the layer whose output holds the class scores: the logits when the model ends
    in a softmax or sigmoid layer (the classic choice: the normalisation only couples the classes)."""
    info = model.network.layer_info()
    n = len(info)
    if n and info[-1]["kind"] == "Activation" and info[-1]["name"].split("/")[-1] in ("softmax", "sigmoid"):
        return n - 1
    last = model.layers[-1] if model.layers else None
    if last is not None and getattr(last, "activation", None) in ("softmax", "sigmoid") and n >= 2:
        return n - 1
    return n


def _forward_and_seed(model, x, class_index, keep=()):
    """Forward pass keeping the scores and the outputs of nodes `keep` readable."""
    x = model._prepare_x(x)
    net = model.network
    from_layer = _score_layer(model)
    probs = net.forward(x, training=False, keep=[from_layer - 1, *keep])
    scores = net.activation(from_layer - 1)
    scores = scores.reshape(len(x), -1)
    k = scores.shape[1]
    if class_index is None:
        cls = probs.reshape(len(x), -1).argmax(axis=1)
    else:
        cls = np.broadcast_to(np.asarray(class_index), (len(x),)).astype(np.int64)
        if np.any(cls < 0) or np.any(cls >= k):
            raise ValueError(f"class_index: expected values in [0, {k}), got {class_index!r}")
    dout = np.zeros((len(x), k), dtype=model.dtype)
    dout[np.arange(len(x)), cls] = 1.0
    out_shape = tuple(net.layer_info()[from_layer - 1]["output_shape"])
    return x, net, from_layer, dout.reshape((len(x),) + out_shape), cls


def saliency(model, x, class_index=None, reduce="max"):
    """|d score / d input| for each pixel: an array (N, H, W) (channels reduced by max, or 'mean',
    or None to keep them). The score is the class's logit; class_index defaults to the predicted
    class of each sample (an int, or one per sample)."""
    if reduce not in ("max", "mean", None):
        raise ValueError(f"saliency: reduce must be 'max', 'mean' or None, got {reduce!r}")
    x, net, from_layer, dout, _ = _forward_and_seed(model, x, class_index)
    g = np.abs(net.backward_between(dout, from_layer, 0))
    if model._channels_first:
        g = g.transpose(0, 3, 1, 2)
        axis = 1
    else:
        axis = -1
    if g.ndim < 3 or reduce is None:
        return g
    return g.max(axis=axis) if reduce == "max" else g.mean(axis=axis)


def _default_cam_layer(model):
    """The last convolutional feature map: the last Conv2D, followed on through the layers after
    it that keep its output shape (BatchNormalization, activations, residual Add), so that in a
    ResNet it is the last block's output, just before the global pooling."""
    from .layers import Conv2D
    layers = model.layers
    convs = [i for i, l in enumerate(layers) if isinstance(l, Conv2D)]
    if not convs:
        raise ValueError("grad_cam: the model has no Conv2D layer")
    i = convs[-1]
    shape = layers[i].output_shape
    while i + 1 < len(layers) and layers[i + 1].output_shape == shape and layers[i].name in model._inbound[layers[i + 1].name]:
        i += 1
    return layers[i]


def _output_node(model, layer):
    """The network node holding `layer`'s output; refused for a layer whose following ReLU runs
    inside it (its own, pre-ReLU output is never stored), and for a BatchNormalization run inside
    the Add after it (Model._residual_fusions)."""
    add = next((a for a, b in model._residual.items() if b == layer.name), None)
    if add is not None:
        raise ValueError(f"grad_cam: the output of {layer.name} is not kept (it runs inside the node of the Add "
                         f"layer {add!r}, which adds the residual to it); use layer={add!r}")
    relu = model._fused.get(layer.name)
    if relu is not None:
        raise ValueError(f"grad_cam: the output of {layer.name} before the ReLU is not kept (the ReLU layer "
                         f"{relu!r} runs inside it); use layer={relu!r}")
    return layer._out_node


def grad_cam(model, x, class_index=None, layer=None):
    """Grad-CAM heat maps (N, H, W) in [0, 1] at the input's resolution: the activations of a layer
    with a spatial output (default: the last convolutional feature map, see _default_cam_layer)
    weighted by the spatial mean of the class score's gradient, ReLU, upsampled (nearest) and
    scaled by each map's maximum."""
    model._ensure_built(np.asarray(x))
    if layer is None:
        layer = _default_cam_layer(model)
    elif isinstance(layer, str):
        layer = model.get_layer(layer)
    if layer not in model.layers:
        raise ValueError(f"grad_cam: {getattr(layer, 'name', layer)!r} is not a layer of this model")
    if len(layer.output_shape) != 4:
        raise ValueError(f"grad_cam: {layer.name} must have a spatial output (None, H, W, C), as a Conv2D "
                         f"layer's, got {layer.output_shape}")
    li = _output_node(model, layer)
    x, net, from_layer, dout, _ = _forward_and_seed(model, x, class_index, keep=[li])
    if li + 1 >= from_layer:
        raise ValueError(f"grad_cam: {layer.name} is the score layer itself")
    acts = net.activation(li)                       # (N, h, w, K)
    grads = net.backward_to(dout, from_layer, li)
    alpha = grads.mean(axis=(1, 2), keepdims=True)   # (N, 1, 1, K)
    cam = np.maximum((alpha * acts).sum(axis=-1), 0.0)
    H, W = x.shape[1], x.shape[2]
    rows = (np.arange(H) * cam.shape[1]) // H
    cols = (np.arange(W) * cam.shape[2]) // W
    cam = cam[:, rows][:, :, cols]
    peak = cam.reshape(len(cam), -1).max(axis=1)
    return cam / np.where(peak > 0, peak, 1.0)[:, None, None]

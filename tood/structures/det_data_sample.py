"""The per-image record that travels from the data pipeline to the metric."""
from mmengine.structures import BaseDataElement, InstanceData


class DetDataSample(BaseDataElement):
    """Metainfo of one image plus its instances.

    Fields:
        gt_instances: ``bboxes`` (G, 4) float xyxy in the network input's
            pixel frame, ``labels`` (G,) long in [0, num_classes).
        ignored_instances: crowd boxes, same layout; never trained on.
        pred_instances: ``bboxes`` (K, 4), ``scores`` (K,), ``labels`` (K,).
    Metainfo (set by the pipeline and the data preprocessor): ``img_id``,
    ``img_path``, ``ori_shape``, ``img_shape``, ``scale_factor`` (w, h),
    ``flip``, ``flip_direction``, ``pad_shape``, ``batch_input_shape``.
    """

    @property
    def gt_instances(self) -> InstanceData:
        return self._gt_instances

    @gt_instances.setter
    def gt_instances(self, value: InstanceData):
        self.set_field(value, '_gt_instances', dtype=InstanceData)

    @gt_instances.deleter
    def gt_instances(self):
        del self._gt_instances

    @property
    def ignored_instances(self) -> InstanceData:
        return self._ignored_instances

    @ignored_instances.setter
    def ignored_instances(self, value: InstanceData):
        self.set_field(value, '_ignored_instances', dtype=InstanceData)

    @ignored_instances.deleter
    def ignored_instances(self):
        del self._ignored_instances

    @property
    def pred_instances(self) -> InstanceData:
        return self._pred_instances

    @pred_instances.setter
    def pred_instances(self, value: InstanceData):
        self.set_field(value, '_pred_instances', dtype=InstanceData)

    @pred_instances.deleter
    def pred_instances(self):
        del self._pred_instances

"""ONFHGrading: live femoral head and necrosis volumes, necrotic ratio and Steinberg grade.

A thin Qt shell over ``onfh.mrml.grading``: it plugs a single-shot QTimer in as the
scheduler of ``LiveGrader`` so a burst of edits (one paint stroke) triggers one
recompute shortly after the burst.
"""

from __future__ import annotations

import os
import pathlib
import sys

import qt
import slicer
import vtk
from slicer import vtkMRMLSegmentationNode, vtkMRMLTableNode
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# The engine lives beside the modules (installed extension) or one level up (checkout).
_HERE = os.path.dirname(os.path.abspath(__file__))
for _root in (_HERE, os.path.dirname(_HERE)):
    if os.path.isdir(os.path.join(_root, "onfh")) and _root not in sys.path:
        sys.path.insert(0, _root)

from onfh.mrml.grade_table import (
    append_grade_row,
    csv_export_path,
    grade_table_row,
    panel_text,
    save_table_csv,
)
from onfh.mrml.grading import GradeUpdate, LiveGrader, compute_grade

# Edits within this interval coalesce into one recompute; recompute < 50 ms keeps the
# panel within 250 ms of the last edit.
REFRESH_DELAY_MS = 150


class ONFHGrading(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "ONFH Grading"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["ONFH extension developers"]
        self.parent.helpText = (
            "Femoral head and necrosis volumes, necrotic ratio and Steinberg extent grade "
            "(A &lt; 15 %, B 15-30 %, C &gt; 30 %), recomputed as you edit the segments. "
            "The femoral head is the union of the head and necrosis segments."
        )
        self.parent.acknowledgementText = (
            "Method after Uemura et al., J Arthroplasty 2025. Research software: not for clinical decisions."
        )


@parameterNodeWrapper
class ONFHGradingParameterNode:
    segmentation: vtkMRMLSegmentationNode
    table: vtkMRMLTableNode
    # pathlib, not str: the ctkPathLineEdit connector accepts pathlib types only
    # (Base/Python/slicer/parameterNodeWrapper/guiConnectors.py); Path() reads "." = no file.
    csvPath: pathlib.Path


class ONFHGradingWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._grader = None
        self._lastUpdate = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ONFHGrading.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = ONFHGradingLogic()

        self._timer = qt.QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(REFRESH_DELAY_MS)
        self._timer.connect("timeout()", self._recompute)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        # React to the user's picks only: the selector also emits currentSegmentChanged when
        # it jumps to the first segment after a removal (populateSegmentCombobox in
        # Libs/MRML/Widgets/qMRMLSegmentSelectorWidget.cxx); its inner combo box's
        # activated(int) comes from the user alone.
        # (Libs/MRML/Widgets/Resources/UI/qMRMLSegmentSelectorWidget.ui names it comboBox_Segment.)
        for selector in (self.ui.headSegmentSelector, self.ui.necrosisSegmentSelector):
            try:
                comboBox = slicer.util.findChild(selector, "comboBox_Segment")
                comboBox.connect("activated(int)", self._onSegmentChoiceChanged)
            except RuntimeError:  # renamed in some Slicer: resolve_segment_choice still guards
                selector.connect("currentSegmentChanged(QString)", self._onSegmentChoiceChanged)
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)
        self.ui.borderlineLabel.hide()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()
        self._stopGrading()

    def enter(self) -> None:
        self.initializeParameterNode()
        if self._grader is not None:
            self._grader.resume()  # catches up on edits made while the panel was hidden

    def exit(self) -> None:
        # Keep the parameter node (other modules hand over a segmentation through it) and
        # the grader, but stop recomputing while the panel is hidden.
        self._timer.stop()
        if self._grader is not None:
            self._grader.pause()
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(
                self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified
            )

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.segmentation:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
            if first:
                self._parameterNode.segmentation = first

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(
                self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified
            )
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._onParameterNodeModified()

    def setSegmentationNode(self, segmentationNode) -> None:
        """Grade ``segmentationNode`` now (ONFHSegmentation calls this after segmenting)."""
        if self._parameterNode is None:
            self.initializeParameterNode()
        self._parameterNode.segmentation = segmentationNode

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        node = self._parameterNode.segmentation if self._parameterNode else None
        self.ui.exportButton.enabled = node is not None
        if self._grader is not None and self._grader.node is node:
            return
        self._stopGrading()
        for selector in (self.ui.headSegmentSelector, self.ui.necrosisSegmentSelector):
            selector.setCurrentNode(node)
        if node is None:
            self._show(None)
            return
        self._grader = self.logic.liveGrader(node, self._show, self._timer.start)
        self._grader.recompute()
        if not self.parent.isEntered:
            self._grader.pause()

    def _stopGrading(self) -> None:
        self._timer.stop()
        if self._grader is not None:
            self._grader.close()
            self._grader = None

    def _onSegmentChoiceChanged(self, _index=-1) -> None:
        # "None" (an empty id) means automatic; onfh.mrml.grading.resolve_segment_choice
        # decides what a removed or doubled choice means.
        if self._grader is not None:
            head = self.ui.headSegmentSelector.currentSegmentID() or None
            necrosis = self.ui.necrosisSegmentSelector.currentSegmentID() or None
            self._grader.set_segments(head, necrosis)

    def _recompute(self) -> None:
        if self._grader is not None:
            self._grader.recompute()

    def _show(self, update: GradeUpdate | None) -> None:
        self._lastUpdate = update
        text = panel_text(update)
        self.ui.gradeBadgeLabel.text = text["grade"]
        self.ui.gradeBadgeLabel.setStyleSheet(
            f"background-color: {text['colour']}; color: white; font-size: 20pt; font-weight: bold;"
            " border-radius: 6px;"
        )
        self.ui.headVolumeLabel.text = text["head"]
        self.ui.necrosisVolumeLabel.text = text["necrosis"]
        self.ui.ratioLabel.text = text["ratio"]
        self.ui.kerboulLabel.text = text["kerboul"]
        self.ui.statusLabel.text = text["status"]
        self.ui.borderlineLabel.setVisible(bool(text["borderline"]))
        if update is not None:
            for selector, segmentId in (
                (self.ui.headSegmentSelector, update.head_id),
                (self.ui.necrosisSegmentSelector, update.necrosis_id),
            ):
                wasBlocked = selector.blockSignals(True)
                selector.setCurrentSegmentID(segmentId or "")
                selector.blockSignals(wasBlocked)

    def onExportButton(self) -> None:
        with slicer.util.tryWithErrorDisplay("Failed to export the grade.", waitCursor=True):
            if self._lastUpdate is None or self._parameterNode.segmentation is None:
                raise ValueError("Select a segmentation to grade first.")
            if self._parameterNode.table is None:
                self._parameterNode.table = slicer.mrmlScene.AddNewNodeByClass(
                    "vtkMRMLTableNode", "ONFH grades"
                )
            self.logic.exportGrade(
                self._parameterNode.segmentation,
                self._lastUpdate,
                self._parameterNode.table,
                self._parameterNode.csvPath,
            )


class ONFHGradingLogic(ScriptedLoadableModuleLogic):
    """Facade over ``onfh.mrml.grading`` for scripts and other modules."""

    def getParameterNode(self):
        return ONFHGradingParameterNode(super().getParameterNode())

    def grade(self, segmentationNode, headSegmentId=None, necrosisSegmentId=None):
        """Grade a segmentation node once; returns an ``onfh.grading.GradeResult``."""
        return compute_grade(segmentationNode, headSegmentId, necrosisSegmentId)

    def liveGrader(self, segmentationNode, onUpdate, schedule) -> LiveGrader:
        return LiveGrader(segmentationNode, onUpdate, schedule)

    def exportGrade(self, segmentationNode, update: GradeUpdate, tableNode, csvPath=None) -> None:
        """Append the grade to ``tableNode`` and, if ``csvPath`` names a file, write the table there."""
        append_grade_row(tableNode, grade_table_row(segmentationNode.GetName(), update))
        target = csv_export_path(csvPath)
        if target is not None:
            save_table_csv(tableNode, str(target))


class ONFHGradingTest(ScriptedLoadableModuleTest):
    """In-Slicer tests of what pytest cannot reach (the Qt panel); the logic is covered by pytest."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_grade_spheres()
        self.setUp()
        self.test_panel_follows_removal_and_redraw()

    def _spheres(self):
        import numpy as np

        z, y, x = np.indices((40, 60, 60))
        head = (x - 30) ** 2 + (y - 30) ** 2 + (z - 20) ** 2 <= 15**2
        lesion = head & ((x - 30) ** 2 + (y - 30) ** 2 + (z - 32) ** 2 <= 10**2)
        volume = slicer.util.addVolumeFromArray(head.astype(np.int16) * 100)
        volume.SetSpacing(0.7, 0.7, 1.0)
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        for name, mask in (("Femoral head", head), ("Necrosis", lesion)):
            self._draw(segmentation, volume, name, mask)
        return segmentation, volume, head, lesion

    @staticmethod
    def _draw(segmentation, volume, name, mask) -> str:
        segmentId = segmentation.GetSegmentation().AddEmptySegment("", name)
        array = mask.astype("uint8")
        slicer.util.updateSegmentBinaryLabelmapFromArray(array, segmentation, segmentId, volume)
        return segmentId

    def test_grade_spheres(self) -> None:
        segmentation, _, head, lesion = self._spheres()
        result = ONFHGradingLogic().grade(segmentation)
        self.assertAlmostEqual(result.ratio, lesion.sum() / head.sum(), places=6)
        self.delayDisplay("ONFHGrading test passed")

    def test_panel_follows_removal_and_redraw(self) -> None:
        """Issue 11: the panel opens (item 1); a removed, redrawn lesion is graded (item 4)."""
        WAIT_MS = 500  # > REFRESH_DELAY_MS; slicer.util.delayDisplay waits only from 400 ms (util.py)
        segmentation, volume, head, lesion = self._spheres()
        slicer.util.selectModule("ONFHGrading")
        widget = slicer.util.getModuleWidget("ONFHGrading")
        widget.setSegmentationNode(segmentation)
        self.delayDisplay("Graded", WAIT_MS)
        self.assertAlmostEqual(widget._lastUpdate.result.ratio, lesion.sum() / head.sum(), places=6)
        segments = segmentation.GetSegmentation()
        segments.RemoveSegment(segments.GetSegmentIdBySegmentName("Necrosis"))
        self.delayDisplay("Lesion removed", WAIT_MS)
        self.assertEqual(widget._lastUpdate.result.ratio, 0.0)
        smaller = lesion.copy()
        smaller[:30] = False  # a smaller lesion: only its slices z >= 30
        self._draw(segmentation, volume, "Necrosis", smaller)
        self.delayDisplay("Lesion redrawn", WAIT_MS)
        self.assertAlmostEqual(widget._lastUpdate.result.ratio, smaller.sum() / head.sum(), places=6)
        self.delayDisplay("ONFHGrading panel test passed")

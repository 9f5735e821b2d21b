package dev.edgebit.example

import java.util.Locale
import kotlin.math.abs
import kotlin.math.sqrt

/**
 * The BitNet agreement bound of edgebit/validate/agreement.py, on the device: cosine >= 0.9999 over all logits,
 * max abs error <= the larger of 1 % of the reference's largest |logit| and twice the reference's rounding noise
 * (app.json, from the bundle's manifest), and the same argmax wherever the reference's top-2 margin exceeds twice
 * the max abs error.
 */
data class Agreement(
    val cosine: Double,
    val maxAbsError: Double,
    val maxAbsLogit: Double,
    val errorBound: Double,
    val top1Agreement: Double,
    val clearMarginMismatches: Int,
    val passed: Boolean,
) {
    fun describe(): String = String.format(
        Locale.ROOT, "cosine %.7f (>= %s), max abs error %.3g (<= %.3g), top-1 agreement %.2f%%, " +
            "clear-margin argmax mismatches %d",
        cosine, MIN_COSINE, maxAbsError, errorBound, 100 * top1Agreement, clearMarginMismatches)

    companion object {
        const val MIN_COSINE = 0.9999
        const val MAX_ABS_ERROR_FRACTION = 0.01
        const val NOISE_FACTOR = 2.0

        /** [rows, vocab] logits (flattened) against the reference. */
        fun compare(candidate: FloatArray, reference: FloatArray, vocab: Int, roundingNoise: Double = 0.0): Agreement {
            require(candidate.size == reference.size) { "logit sizes differ: ${candidate.size} vs ${reference.size}" }
            var dot = 0.0; var normA = 0.0; var normB = 0.0; var maxErr = 0.0; var maxLogit = 0.0
            var equal = true
            for (i in reference.indices) {
                val a = candidate[i].toDouble(); val b = reference[i].toDouble()
                dot += a * b; normA += a * a; normB += b * b
                maxErr = maxOf(maxErr, abs(a - b)); maxLogit = maxOf(maxLogit, abs(b))
                equal = equal && a == b
            }
            val denom = sqrt(normA) * sqrt(normB)
            val cosine = if (denom > 0) dot / denom else if (equal) 1.0 else 0.0
            val rows = reference.size / vocab
            var same = 0; var mismatches = 0
            for (r in 0 until rows) {
                val base = r * vocab
                var refArg = 0; var candArg = 0
                var first = Float.NEGATIVE_INFINITY; var second = Float.NEGATIVE_INFINITY
                for (v in 0 until vocab) {
                    val x = reference[base + v]
                    if (x > reference[base + refArg]) refArg = v
                    if (candidate[base + v] > candidate[base + candArg]) candArg = v
                    if (x > first) { second = first; first = x } else if (x > second) second = x
                }
                val clear = vocab > 1 && (first.toDouble() - second.toDouble()) > 2 * maxErr
                if (refArg == candArg) same++ else if (clear) mismatches++
            }
            val bound = maxOf(MAX_ABS_ERROR_FRACTION * maxLogit, NOISE_FACTOR * roundingNoise)
            val passed = cosine >= MIN_COSINE && maxErr <= bound && mismatches == 0
            return Agreement(cosine, maxErr, maxLogit, bound, if (rows > 0) same.toDouble() / rows else 1.0,
                             mismatches, passed)
        }
    }
}

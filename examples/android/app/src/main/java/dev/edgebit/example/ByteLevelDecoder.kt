package dev.edgebit.example

import org.json.JSONObject
import java.io.File

/**
 * Decodes token ids with a byte-level BPE tokenizer.json (GPT-2 style): each vocabulary entry is a string of
 * characters that stand for bytes; the bytes of consecutive tokens are joined and read as UTF-8. Special tokens
 * (added_tokens with "special": true) are dropped. Decoding needs no merges.
 */
class ByteLevelDecoder(tokenizerJson: File) {
    private val tokens = HashMap<Int, String>()
    private val special = HashSet<Int>()

    init {
        val json = JSONObject(tokenizerJson.readText())
        val vocab = json.getJSONObject("model").getJSONObject("vocab")
        for (token in vocab.keys()) tokens[vocab.getInt(token)] = token
        val added = json.optJSONArray("added_tokens")
        for (i in 0 until (added?.length() ?: 0)) {
            val entry = added!!.getJSONObject(i)
            tokens[entry.getInt("id")] = entry.getString("content")
            if (entry.optBoolean("special")) special.add(entry.getInt("id"))
        }
    }

    fun decode(ids: LongArray): String {
        val bytes = java.io.ByteArrayOutputStream()
        for (id in ids) {
            if (id.toInt() in special) continue
            val token = tokens[id.toInt()] ?: continue
            for (c in token) bytes.write(BYTE_OF[c] ?: continue)
        }
        return String(bytes.toByteArray(), Charsets.UTF_8)
    }

    companion object {
        /** The inverse of GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest for 256 + n. */
        private val BYTE_OF: Map<Char, Int> = run {
            val printable = ((33..126) + (161..172) + (174..255)).toSet()
            val map = HashMap<Char, Int>()
            var n = 0
            for (b in 0..255) map[(if (b in printable) b else 256 + n++).toChar()] = b
            map
        }
    }
}
